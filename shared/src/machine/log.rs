//! Logging (levels, loggers, line formatting) and tracer binding.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use crate::handlers::Event;
use crate::tracer::Tracer;
use crate::types::{Args, LogLevel};

use super::{ArgsMapper, ExceptionArgsPanic, Logger, Machine};

/// Upstream's `ExceptionHandler.ExceptionState`: log the error at Changes level.
pub(crate) fn exception_state(e: &Event<'_>) {
    let m = e.machine();
    let args = e.args();
    let err = args.get("err").map(|v| v.to_log_string());
    let trace = args.get("err.trace").and_then(|v| v.as_str()).unwrap_or("");
    let panic = args.get("panic").and_then(|v| v.downcast_ref::<ExceptionArgsPanic>());
    let with_trace = m.0.log_stack_trace && !trace.is_empty();
    match (err, panic) {
        (None, None) => m.log_lvl(LogLevel::Changes, "[error] missing error in ExceptionState"),
        (err, None) => {
            let mut s = format!("[error] {}", err.unwrap_or_default());
            if with_trace {
                s.push('\n');
                s.push_str(trace);
            }
            m.log_lvl(LogLevel::Changes, &s);
        }
        (err, Some(p)) => {
            let mut s = format!(
                "[error:{}] {} ({})",
                p.mutation_type,
                p.called_states.join(" "),
                err.unwrap_or_default()
            );
            if with_trace {
                s.push('\n');
                s.push_str(trace);
            }
            m.log_lvl(LogLevel::Changes, &s);
        }
    }
}

impl Machine {
    /// Bind a tracer.
    pub fn bind_tracer(&self, t: Arc<dyn Tracer>) {
        self.0.tracers.write().push(t);
        self.0.has_tracers.store(true, Ordering::Release);
    }

    /// Detach a tracer (by identity); false if it was not bound.
    pub fn detach_tracer(&self, t: &Arc<dyn Tracer>) -> bool {
        let mut w = self.0.tracers.write();
        let before = w.len();
        w.retain(|x| !Arc::ptr_eq(x, t));
        let found = w.len() != before;
        self.0.has_tracers.store(!w.is_empty(), Ordering::Release);
        found
    }

    /// Bound tracers (copy).
    pub fn tracers(&self) -> Vec<Arc<dyn Tracer>> {
        self.0.tracers.read().clone()
    }

    pub(super) fn with_tracers(&self, f: impl Fn(&Arc<dyn Tracer>)) {
        if !self.0.has_tracers.load(Ordering::Acquire) {
            return;
        }
        let ts = self.0.tracers.read();
        for t in ts.iter() {
            if self.is_disposed() {
                break;
            }
            f(t);
        }
    }

    // ----- logging -----

    /// Current log level.
    #[inline]
    pub fn log_level(&self) -> LogLevel {
        LogLevel::from_u8(self.0.log_level.load(Ordering::Relaxed))
    }
    /// Upstream `GetLogLevel`.
    pub fn get_log_level(&self) -> LogLevel {
        self.log_level()
    }
    /// Set the log level.
    pub fn set_log_level(&self, lvl: LogLevel) {
        self.0.log_level.store(lvl as u8, Ordering::Relaxed);
    }
    /// Set (or remove) the logger. Without one, lines go to stdout (with `std`).
    pub fn set_logger(&self, logger: Option<Logger>) {
        *self.0.logger.write() = logger;
    }
    /// The logger, if set.
    pub fn get_logger(&self) -> Option<Logger> {
        self.0.logger.read().clone()
    }
    /// Set a line-printing logger and the level together.
    pub fn set_logger_simple(&self, f: impl Fn(&str) + Send + Sync + 'static, lvl: LogLevel) {
        self.set_logger(Some(Arc::new(move |_l, s: &str| f(s))));
        self.set_log_level(lvl);
    }
    /// Set a logger that drops everything, and the level (tracers still collect lines).
    pub fn set_logger_empty(&self, lvl: LogLevel) {
        self.set_logger(Some(Arc::new(|_, _| {})));
        self.set_log_level(lvl);
    }
    /// Prefix lines with the machine id.
    pub fn set_log_id(&self, v: bool) {
        self.0.log_id.store(v, Ordering::Relaxed);
    }
    /// Whether lines are prefixed with the id.
    #[inline]
    pub fn get_log_id(&self) -> bool {
        self.0.log_id.load(Ordering::Relaxed)
    }
    /// Set the args mapper for log lines.
    pub fn set_log_args(&self, mapper: Option<ArgsMapper>) {
        *self.0.log_args.write() = mapper;
    }
    /// The args mapper.
    pub fn get_log_args(&self) -> Option<ArgsMapper> {
        self.0.log_args.read().clone()
    }

    /// A user log line at Changes level: `[extern] msg`, or `[extern:AEnter] msg` inside a handler.
    pub fn log(&self, msg: &str) {
        if self.log_level() < LogLevel::Changes {
            return;
        }
        let msg = msg.replace('\n', " ");
        let no = self.0.current_handler.load(Ordering::Relaxed);
        let h = if no == 0 {
            None
        } else {
            self.0.dispatch.read().ev_names.get(no).cloned()
        };
        let line = match h {
            Some(h) => format!("[extern:{}] {msg}", crate::types::truncate_str(&h[..], 15)),
            None => format!("[extern] {msg}"),
        };
        self.log_raw(LogLevel::Changes, &line);
    }

    /// An internal-style line at `lvl`.
    pub fn log_lvl(&self, lvl: LogLevel, msg: &str) {
        self.log_raw(lvl, msg);
    }

    pub(super) fn log_fmt(&self, lvl: LogLevel, f: impl FnOnce() -> String) {
        let cur = self.log_level();
        if cur == LogLevel::Nothing || lvl > cur {
            return;
        }
        self.log_raw(lvl, &f());
    }

    pub(super) fn log_raw(&self, lvl: LogLevel, msg: &str) {
        let cur = self.log_level();
        if cur == LogLevel::Nothing || lvl > cur {
            return;
        }
        let line = if self.get_log_id() {
            let id: String = self.id().chars().take(5).collect();
            format!("[{id}] {msg}")
        } else {
            String::from(msg)
        };
        if self.0.has_tracers.load(Ordering::Relaxed) {
            self.0.log_buf.lock().push(line.clone());
        }
        let logger = self.0.logger.read().clone();
        if let Some(l) = logger {
            l(lvl, &line);
        } else {
            #[cfg(feature = "std")]
            std::println!("{line}");
        }
    }

    pub(super) fn log_args_suffix(&self, args: &Args) -> String {
        if args.is_empty() {
            return String::new();
        }
        let Some(m) = self.0.log_args.read().clone() else {
            return String::new();
        };
        let pairs = m(args);
        if pairs.is_empty() {
            return String::new();
        }
        let p: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!(" ({})", p.join(" "))
    }
}
