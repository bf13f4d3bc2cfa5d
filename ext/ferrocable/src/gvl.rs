//! Running Rust without Ruby's GVL, so other Ruby threads run while a worker
//! waits for a call or the main thread waits for shutdown.
//!
//! The unblock function is how Ruby interrupts the wait (Thread#kill,
//! Ctrl-C, process exit): it must make the blocking closure return soon.
//! Neither closure may touch a Ruby value, and a panic is caught before it
//! could unwind into Ruby.

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};

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
/// thread) when Ruby wants this thread back.
pub fn without_gvl<F, R, U>(func: F, unblock: U) -> R
where
    F: FnOnce() -> R,
    U: Fn(),
{
    let mut call = Call {
        func: Some(func),
        result: None,
    };
    unsafe {
        rb_sys::rb_thread_call_without_gvl(
            Some(call_blocking::<F, R>),
            &mut call as *mut Call<F, R> as *mut c_void,
            Some(call_unblock::<U>),
            &unblock as *const U as *mut c_void,
        );
    }
    match call.result {
        Some(Ok(r)) => r,
        // Re-panicking here is caught by magnus and raised as a Ruby exception.
        Some(Err(panic)) => std::panic::resume_unwind(panic),
        None => panic!("the blocking function did not run"),
    }
}
