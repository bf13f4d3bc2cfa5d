//! Waiting without Ruby's GVL, so other Ruby threads run while a worker
//! waits for a call or a thread waits for the server to start or stop, and
//! so Ruby can still interrupt the wait (Thread#kill, Thread#raise, Ctrl-C,
//! process exit).
//!
//! `rb_thread_call_without_gvl` handles Ruby's pending interrupts before and
//! after the blocking function, and one that raises is a longjmp to the
//! nearest Ruby tag. Called bare from a method, that jump went straight over
//! the Rust frames of the method (skipping their destructors: a lock guard
//! stays locked, a value taken from a queue is never dropped). So the call is
//! made under `rb_protect` (magnus' `protect`): the jump ends there, and the
//! exception comes back as an `Err` that the caller returns to Ruby once its
//! own state is consistent. Neither closure may touch a Ruby value, and a
//! panic is caught before it could unwind into Ruby.

use magnus::{Error, Ruby};
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

struct Call<F, R> {
    func: Option<F>,
    result: Option<std::thread::Result<R>>,
}

unsafe extern "C" fn call_blocking<F: FnOnce() -> R, R>(data: *mut c_void) -> *mut c_void {
    // SAFETY: `data` is the `Call` owned by `without_gvl`, alive for this call.
    let call = unsafe { &mut *(data as *mut Call<F, R>) };
    if let Some(f) = call.func.take() {
        call.result = Some(catch_unwind(AssertUnwindSafe(f)));
    }
    std::ptr::null_mut()
}

unsafe extern "C" fn call_unblock<U: Fn()>(data: *mut c_void) {
    // SAFETY: `data` is the `U` owned by `without_gvl`, alive while Ruby may call this.
    let unblock = unsafe { &*(data as *const U) };
    let _ = catch_unwind(AssertUnwindSafe(unblock));
}

/// Runs `func` with the GVL released; `unblock` is called (from another
/// thread) when Ruby wants this thread back, and must make `func` return
/// soon. `Err` is the exception of an interrupt Ruby handled around the call
/// (then `func`'s result, if it ran, is dropped).
pub fn without_gvl<F, R, U>(_ruby: &Ruby, func: F, unblock: U) -> Result<R, Error>
where
    F: FnOnce() -> R,
    U: Fn(),
{
    let mut call = Call {
        func: Some(func),
        result: None,
    };
    let data = &mut call as *mut Call<F, R> as *mut c_void;
    let unblock_data = &unblock as *const U as *mut c_void;
    // The protected closure holds nothing to drop: a longjmp out of it skips
    // no destructor.
    let protected = magnus::rb_sys::protect(|| {
        // SAFETY: both pointers are to locals of this frame, which outlives
        // the call; Ruby calls `unblock` only while `func` may be running.
        unsafe {
            rb_sys::rb_thread_call_without_gvl(
                Some(call_blocking::<F, R>),
                data,
                Some(call_unblock::<U>),
                unblock_data,
            );
        }
        rb_sys::Qnil as rb_sys::VALUE
    });
    protected?;
    match call.result {
        Some(Ok(r)) => Ok(r),
        // Re-panicking here is caught by magnus and raised as a Ruby exception.
        Some(Err(panic)) => std::panic::resume_unwind(panic),
        None => panic!("the blocking function did not run"),
    }
}

/// A value that one thread sets once and Ruby threads wait for (see
/// [`wait`]): the server thread's "listening" or "ended".
pub struct Latch<T> {
    state: Mutex<LatchState<T>>,
    changed: Condvar,
}

struct LatchState<T> {
    value: Option<T>,
    /// Bumped by Ruby's unblock function: waiters return to let Ruby run.
    interrupts: u64,
}

enum Waited<T> {
    Ready(T),
    Interrupted,
    TimedOut,
}

impl<T: Clone> Latch<T> {
    pub fn new() -> Self {
        Latch {
            state: Mutex::new(LatchState {
                value: None,
                interrupts: 0,
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LatchState<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the value (the first one stays) and wakes every waiter.
    pub fn set(&self, value: T) {
        let mut state = self.lock();
        if state.value.is_none() {
            state.value = Some(value);
        }
        drop(state);
        self.changed.notify_all();
    }

    pub fn get(&self) -> Option<T> {
        self.lock().value.clone()
    }

    fn interrupts(&self) -> u64 {
        self.lock().interrupts
    }

    fn interrupt(&self) {
        self.lock().interrupts += 1;
        self.changed.notify_all();
    }

    /// Blocks until the value is set, an interrupt newer than `seen`
    /// arrives, or `deadline` passes.
    fn wait_until(&self, seen: u64, deadline: Option<Instant>) -> Waited<T> {
        let mut state = self.lock();
        loop {
            if let Some(value) = &state.value {
                return Waited::Ready(value.clone());
            }
            if state.interrupts != seen {
                return Waited::Interrupted;
            }
            state = match deadline {
                None => self.changed.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Waited::TimedOut;
                    }
                    self.changed
                        .wait_timeout(state, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }
}

/// Waits for `latch` with the GVL released, up to `timeout` (`None`: no
/// limit). `Ok(None)` when the time ran out. `Err` when Ruby interrupted the
/// thread with an exception (Thread#kill, Thread#raise, Ctrl-C): the caller
/// leaves its state consistent and returns the error to Ruby. Interrupts
/// that raise nothing (a trap handler that returned) do not end the wait.
pub fn wait<T: Clone>(
    ruby: &Ruby,
    latch: &Latch<T>,
    timeout: Option<Duration>,
) -> Result<Option<T>, Error> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        // Read before releasing the GVL: an unblock call from then on is seen.
        let seen = latch.interrupts();
        match without_gvl(
            ruby,
            || latch.wait_until(seen, deadline),
            || latch.interrupt(),
        )? {
            Waited::Ready(value) => return Ok(Some(value)),
            Waited::TimedOut => return Ok(None),
            // Ruby has handled the interrupt, and it raised nothing.
            Waited::Interrupted => {}
        }
    }
}
