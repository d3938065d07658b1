//! Lock shims: std locks with the `std` feature (fair, parking), spin locks without it.
//!
//! Poisoning is ignored on purpose: a panicking handler is turned into the Exception state, and the
//! machine's own critical sections never call user code, so the data behind a lock stays consistent.

#[cfg(feature = "std")]
mod imp {
    pub(crate) struct Mutex<T>(std::sync::Mutex<T>);
    pub(crate) type MutexGuard<'a, T> = std::sync::MutexGuard<'a, T>;
    impl<T> Mutex<T> {
        pub(crate) const fn new(v: T) -> Self {
            Self(std::sync::Mutex::new(v))
        }
        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(|e| e.into_inner())
        }
    }
    pub(crate) struct RwLock<T>(std::sync::RwLock<T>);
    impl<T> RwLock<T> {
        pub(crate) const fn new(v: T) -> Self {
            Self(std::sync::RwLock::new(v))
        }
        pub(crate) fn read(&self) -> std::sync::RwLockReadGuard<'_, T> {
            self.0.read().unwrap_or_else(|e| e.into_inner())
        }
        pub(crate) fn write(&self) -> std::sync::RwLockWriteGuard<'_, T> {
            self.0.write().unwrap_or_else(|e| e.into_inner())
        }
    }
}

#[cfg(not(feature = "std"))]
mod imp {
    pub(crate) struct Mutex<T>(spin::Mutex<T>);
    pub(crate) type MutexGuard<'a, T> = spin::MutexGuard<'a, T>;
    impl<T> Mutex<T> {
        pub(crate) const fn new(v: T) -> Self {
            Self(spin::Mutex::new(v))
        }
        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock()
        }
    }
    pub(crate) struct RwLock<T>(spin::RwLock<T>);
    impl<T> RwLock<T> {
        pub(crate) const fn new(v: T) -> Self {
            Self(spin::RwLock::new(v))
        }
        pub(crate) fn read(&self) -> spin::RwLockReadGuard<'_, T> {
            self.0.read()
        }
        pub(crate) fn write(&self) -> spin::RwLockWriteGuard<'_, T> {
            self.0.write()
        }
    }
}

pub(crate) use imp::*;
