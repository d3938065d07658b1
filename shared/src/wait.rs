//! Cancellation contexts and wait futures, runtime-free: a waker is all they need.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Context, Poll, Waker};

use crate::sync::Mutex;

/// Why a wait ended without its condition being met.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    /// The context passed to the wait was canceled.
    #[error("wait canceled")]
    Canceled,
    /// The machine was disposed.
    #[error("machine disposed")]
    Disposed,
    /// The arguments were invalid (e.g. `when_time` with lists of different lengths).
    #[error("invalid arguments: {0}")]
    InvalidArgs(String),
    /// A remote mirror lost its connection.
    #[error("disconnected: {0}")]
    Disconnected(String),
    /// The remote side refused the wait (its code says why: `TooManyWaits`, `InvalidParams` …).
    #[error("remote error {code}: {message}")]
    Remote {
        /// Stable code.
        code: crate::error::ErrorCode,
        /// Detail.
        message: String,
    },
}

/// What a state context carries (upstream `CtxValue`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtxValue {
    /// The machine's id.
    pub id: String,
    /// The state the context belongs to.
    pub state: String,
    /// The state's tick when the context was made.
    pub tick: u64,
}

type Callback = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct CtxState {
    wakers: Vec<Waker>,
    children: Vec<Weak<CtxInner>>,
    callbacks: Vec<(u64, Callback)>,
    next_cb: u64,
}

struct CtxInner {
    canceled: AtomicBool,
    /// Set once the cancel's callbacks and children are done (what `canceled()` waits for).
    settled: AtomicBool,
    state: Mutex<CtxState>,
    value: Option<CtxValue>,
}

/// A cancellation context (upstream `context.Context`): cancel it and every child, waiter and
/// callback learns about it. Cheap to clone.
#[derive(Clone)]
pub struct Ctx(Arc<CtxInner>);

impl core::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ctx")
            .field("canceled", &self.is_canceled())
            .field("value", &self.0.value)
            .finish()
    }
}

impl Default for Ctx {
    fn default() -> Self {
        Self::new()
    }
}

impl Ctx {
    /// A root context, canceled only by [`Ctx::cancel`].
    pub fn new() -> Self {
        Self::with_value(None)
    }

    fn with_value(value: Option<CtxValue>) -> Self {
        Ctx(Arc::new(CtxInner {
            canceled: AtomicBool::new(false),
            settled: AtomicBool::new(false),
            state: Mutex::new(CtxState::default()),
            value,
        }))
    }

    /// A child canceled together with this context.
    pub fn child(&self) -> Ctx {
        self.child_with(None)
    }

    pub(crate) fn child_with(&self, value: Option<CtxValue>) -> Ctx {
        let c = Ctx::with_value(value);
        let mut st = self.0.state.lock();
        if self.is_canceled() {
            drop(st);
            c.cancel();
        } else {
            st.children.retain(|w| w.strong_count() > 0);
            st.children.push(Arc::downgrade(&c.0));
        }
        c
    }

    /// A context that is already canceled.
    pub fn canceled_ctx(value: Option<CtxValue>) -> Ctx {
        let c = Ctx::with_value(value);
        c.cancel();
        c
    }

    /// The state-context value, if this is a state context.
    pub fn value(&self) -> Option<&CtxValue> {
        self.0.value.as_ref()
    }

    /// True once canceled.
    pub fn is_canceled(&self) -> bool {
        self.0.canceled.load(Ordering::Acquire)
    }

    /// Cancel this context and its children; runs callbacks (e.g. unbinding waits), then wakes
    /// waiters, so whoever wakes on the cancel finds the cleanup done. Idempotent.
    pub fn cancel(&self) {
        if self.0.canceled.swap(true, Ordering::AcqRel) {
            return;
        }
        let st = core::mem::take(&mut *self.0.state.lock());
        for (_, cb) in st.callbacks {
            cb();
        }
        for c in st.children {
            if let Some(c) = c.upgrade() {
                Ctx(c).cancel();
            }
        }
        self.0.settled.store(true, Ordering::Release);
        for w in st.wakers {
            w.wake();
        }
        // a waiter that registered while the callbacks ran
        let late = core::mem::take(&mut self.0.state.lock().wakers);
        for w in late {
            w.wake();
        }
    }

    /// Run `f` once when canceled (immediately if already canceled). Returns an id for
    /// [`Ctx::remove_callback`].
    pub fn on_cancel(&self, f: impl FnOnce() + Send + 'static) -> u64 {
        let mut st = self.0.state.lock();
        if self.is_canceled() {
            drop(st);
            f();
            return 0;
        }
        st.next_cb += 1;
        let id = st.next_cb;
        st.callbacks.push((id, Box::new(f)));
        id
    }

    /// Forget a callback registered with [`Ctx::on_cancel`].
    pub fn remove_callback(&self, id: u64) {
        self.0.state.lock().callbacks.retain(|(i, _)| *i != id);
    }

    /// Same context (identity).
    pub fn ptr_eq(&self, other: &Ctx) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// A future that completes when this context is canceled.
    pub fn canceled(&self) -> CtxCanceled {
        CtxCanceled(self.clone())
    }

    fn register(&self, w: &Waker) {
        let mut st = self.0.state.lock();
        if !st.wakers.iter().any(|x| x.will_wake(w)) {
            st.wakers.push(w.clone());
        }
    }
}

/// Completes when its context is canceled and the cancel's callbacks (the waits it unbinds)
/// and children are done.
#[derive(Debug)]
pub struct CtxCanceled(Ctx);

impl Future for CtxCanceled {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let settled = |c: &Ctx| c.0.settled.load(Ordering::Acquire);
        if settled(&self.0) {
            return Poll::Ready(());
        }
        self.0.register(cx.waker());
        if settled(&self.0) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

#[derive(Default)]
struct SlotInner {
    result: Option<Result<(), WaitError>>,
    waker: Option<Waker>,
}

/// The completion side of a [`Wait`], kept in the machine's binding indexes.
pub struct Slot(Mutex<SlotInner>);

impl Default for Slot {
    fn default() -> Self {
        Slot(Mutex::new(SlotInner::default()))
    }
}

impl Slot {
    /// Complete the wait (first completion wins) and wake its task.
    pub fn complete(&self, r: Result<(), WaitError>) {
        let w = {
            let mut s = self.0.lock();
            if s.result.is_some() {
                return;
            }
            s.result = Some(r);
            s.waker.take()
        };
        if let Some(w) = w {
            w.wake();
        }
    }

    /// True once completed.
    pub fn is_done(&self) -> bool {
        self.0.lock().result.is_some()
    }
}

/// Something that keeps wait bindings and can drop one (the machine, a mirror).
pub trait WaitRegistry: Send + Sync {
    /// Drop binding `id` from the indexes (its wait was dropped or its context canceled).
    fn unbind(&self, id: u64);
}

/// A wait (upstream's `When*` channel) as a future: `Ok(())` when the condition is met,
/// `Err(WaitError::Canceled)` when its context is canceled. Dropping it removes its binding.
#[must_use = "a wait does nothing unless awaited or checked"]
pub struct Wait {
    slot: Option<Arc<Slot>>,
    ready: Option<Result<(), WaitError>>,
    ctx: Option<Ctx>,
    registry: Option<(Weak<dyn WaitRegistry>, u64)>,
    /// The ctx callback that unbinds this wait as soon as the ctx is canceled.
    ctx_cb: Option<u64>,
}

impl core::fmt::Debug for Wait {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Wait").field("ready", &self.is_ready()).finish()
    }
}

impl Wait {
    /// An already-finished wait.
    pub fn ready(r: Result<(), WaitError>) -> Wait {
        Wait {
            slot: None,
            ready: Some(r),
            ctx: None,
            registry: None,
            ctx_cb: None,
        }
    }

    /// A pending wait completed through `slot`, canceled by `ctx`, unbound from `registry` on drop
    /// or as soon as `ctx` is canceled.
    pub fn pending(slot: Arc<Slot>, ctx: Option<Ctx>, registry: Option<(Weak<dyn WaitRegistry>, u64)>) -> Wait {
        let ctx_cb = match (&ctx, &registry) {
            (Some(c), Some((reg, id))) => {
                let (reg, id) = (reg.clone(), *id);
                Some(c.on_cancel(move || {
                    if let Some(r) = reg.upgrade() {
                        r.unbind(id);
                    }
                }))
            }
            _ => None,
        };
        Wait {
            slot: Some(slot),
            ready: None,
            ctx,
            registry,
            ctx_cb,
        }
    }

    fn forget_ctx_cb(&mut self) {
        if let (Some(c), Some(id)) = (&self.ctx, self.ctx_cb.take()) {
            c.remove_callback(id);
        }
    }

    /// True when awaiting would not block (met, canceled or failed) — Go's `select` with `default`.
    pub fn is_ready(&self) -> bool {
        if self.ready.is_some() {
            return true;
        }
        if self.ctx.as_ref().is_some_and(|c| c.is_canceled()) {
            return true;
        }
        self.slot.as_ref().is_some_and(|s| s.is_done())
    }

    /// The outcome if finished, without waiting.
    pub fn try_result(&self) -> Option<Result<(), WaitError>> {
        if let Some(r) = &self.ready {
            return Some(r.clone());
        }
        if let Some(s) = &self.slot {
            if let Some(r) = &s.0.lock().result {
                return Some(r.clone());
            }
        }
        if self.ctx.as_ref().is_some_and(|c| c.is_canceled()) {
            return Some(Err(WaitError::Canceled));
        }
        None
    }

    fn unbind(&mut self) {
        if let Some((reg, id)) = self.registry.take() {
            if let Some(reg) = reg.upgrade() {
                reg.unbind(id);
            }
        }
    }
}

impl Future for Wait {
    type Output = Result<(), WaitError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(r) = self.ready.clone() {
            return Poll::Ready(r);
        }
        if let Some(slot) = self.slot.clone() {
            let mut s = slot.0.lock();
            if let Some(r) = s.result.clone() {
                drop(s);
                self.registry = None;
                self.forget_ctx_cb();
                self.ready = Some(r.clone());
                return Poll::Ready(r);
            }
            match &s.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => s.waker = Some(cx.waker().clone()),
            }
        }
        if let Some(ctx) = self.ctx.clone() {
            if ctx.is_canceled() {
                self.unbind();
                self.ready = Some(Err(WaitError::Canceled));
                return Poll::Ready(Err(WaitError::Canceled));
            }
            ctx.register(cx.waker());
            if ctx.is_canceled() {
                self.unbind();
                self.ready = Some(Err(WaitError::Canceled));
                return Poll::Ready(Err(WaitError::Canceled));
            }
        }
        Poll::Pending
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        self.forget_ctx_cb();
        if self.ready.is_none() && !self.slot.as_ref().is_some_and(|s| s.is_done()) {
            self.unbind();
        }
    }
}

impl WaitError {
    /// This error's stable code.
    pub fn code(&self) -> crate::error::ErrorCode {
        use crate::error::ErrorCode;
        use WaitError as W;
        match self {
            W::Canceled => ErrorCode::Aborted,
            W::Disposed => ErrorCode::Closed,
            W::InvalidArgs(_) => ErrorCode::InvalidArgs,
            W::Disconnected(_) => ErrorCode::Disconnected,
            W::Remote { code, .. } => *code,
        }
    }

    /// A remote wait's failure as a wait error: `Disposed` and `Closed` → `Disposed`, `Aborted`
    /// → `Canceled`, `Disconnected` → `Disconnected`, anything else → `Remote` with its code.
    pub fn from_error(e: crate::error::Error) -> WaitError {
        use crate::error::{Error, ErrorCode};
        match e {
            Error::Disposed => WaitError::Disposed,
            Error::Aborted => WaitError::Canceled,
            Error::InvalidArgs(m) => WaitError::InvalidArgs(m),
            Error::Rpc {
                code: ErrorCode::Closed,
                ..
            } => WaitError::Disposed,
            Error::Rpc {
                code: ErrorCode::Disconnected,
                message,
            } => WaitError::Disconnected(message),
            Error::Rpc { code, message } => WaitError::Remote { code, message },
            other => WaitError::Remote {
                code: other.code(),
                message: alloc::string::ToString::to_string(&other),
            },
        }
    }
}
