//! The async core's two pieces of plumbing: the boxed future the `Backend` trait's `*_async`
//! methods return, and `block`, the native blocking wrapper over them.
//!
//! Every read-back of the GPU is a future. Natively it is already resolved by the time it is
//! first polled (the read-back waits for the device inside, as before), so `block` costs a
//! poll; in the browser the buffer maps only after control returns to the event loop, so the
//! page awaits the same futures and nothing on its path blocks.

#[cfg(target_arch = "wasm32")]
use crate::error::Error;
use crate::error::Result;
use std::future::Future;
use std::pin::Pin;

/// A boxed future borrowing what it was made from; not `Send` (wgpu's browser types are not).
pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// A resolved `LocalFuture`: what the default `*_async` methods of a backend that never waits
/// (the CPU) return.
pub fn ready<'a, T: 'a>(value: T) -> LocalFuture<'a, T> {
    Box::pin(std::future::ready(value))
}

/// Runs `fut` to completion on this thread: the native blocking API over the async core.
#[cfg(not(target_arch = "wasm32"))]
pub fn block<T>(fut: impl Future<Output = Result<T>>) -> Result<T> {
    pollster::block_on(fut)
}

/// In the browser a thread can't wait: a future that is not resolved at once (a GPU read-back)
/// is an error that says to use the async API, never a hang. CPU work resolves at once.
#[cfg(target_arch = "wasm32")]
pub fn block<T>(fut: impl Future<Output = Result<T>>) -> Result<T> {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(r) => r,
        std::task::Poll::Pending => Err(Error::Gpu(
            "a blocking call was made in the browser, where the GPU answers only through the \
             event loop; use the *_async methods (train::train_from_async)"
                .to_string(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn block_returns_what_a_resolved_future_holds() {
        assert_eq!(block(ready(Ok::<u32, Error>(7))).unwrap(), 7);
        let failed = block(ready(Err::<u32, Error>(Error::Gpu("lost".into()))));
        assert!(matches!(failed, Err(Error::Gpu(m)) if m == "lost"));
    }
}
