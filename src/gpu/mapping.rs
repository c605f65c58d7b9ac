//! A one-shot channel from `map_async`'s callback to a future: how a read-back is awaited.
//!
//! wgpu reports a mapping through a callback, run by a `device.poll` natively and by the
//! browser's event loop on the web. The callback's `MapSender` fills the shared slot and wakes
//! the `Mapped` future. A sender dropped without sending (the buffer went away) resolves the
//! future to `None`, as does `give_up_waiting` natively after a timed-out wait, so a native
//! `block` never waits on a future that nothing will wake.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

type MapResult = Result<(), wgpu::BufferAsyncError>;

#[derive(Default)]
struct Slot {
    result: Option<MapResult>,
    /// No result will come: the sender was dropped, or the native wait gave up.
    closed: bool,
    waker: Option<Waker>,
}

type Shared = Arc<Mutex<Slot>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Slot> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// The callback's end.
pub(crate) struct MapSender(Option<Shared>);

/// The awaiting end.
pub(crate) struct Mapped(Shared);

pub(crate) fn channel() -> (MapSender, Mapped) {
    let shared = Shared::default();
    (MapSender(Some(shared.clone())), Mapped(shared))
}

impl MapSender {
    pub(crate) fn send(mut self, result: MapResult) {
        if let Some(shared) = self.0.take() {
            let waker = {
                let mut slot = lock(&shared);
                slot.result = Some(result);
                slot.waker.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
        }
    }
}

impl Drop for MapSender {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            let waker = {
                let mut slot = lock(&shared);
                slot.closed = true;
                slot.waker.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
        }
    }
}

impl Mapped {
    /// Whether the callback has run (or will never run).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(crate) fn is_settled(&self) -> bool {
        let slot = lock(&self.0);
        slot.result.is_some() || slot.closed
    }

    /// After a native wait that did all it could: the future resolves at once, to `None` if
    /// the callback still has not run.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(crate) fn give_up_waiting(&self) {
        lock(&self.0).closed = true;
    }
}

impl Future for Mapped {
    type Output = Option<MapResult>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = lock(&self.0);
        if let Some(r) = slot.result.take() {
            return Poll::Ready(Some(r));
        }
        if slot.closed {
            return Poll::Ready(None);
        }
        slot.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sent_result_resolves_the_future_and_a_dropped_sender_resolves_it_to_none() {
        let (tx, rx) = channel();
        assert!(!rx.is_settled());
        tx.send(Ok(()));
        assert!(rx.is_settled());
        assert!(matches!(pollster::block_on(rx), Some(Ok(()))));

        let (tx, rx) = channel();
        drop(tx);
        assert!(pollster::block_on(rx).is_none());

        let (_tx, rx) = channel();
        rx.give_up_waiting();
        assert!(
            pollster::block_on(rx).is_none(),
            "a native wait that gave up never hangs"
        );
    }

    #[test]
    fn the_future_wakes_when_the_callback_runs_later() {
        let (tx, rx) = channel();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            tx.send(Ok(()));
        });
        assert!(matches!(pollster::block_on(rx), Some(Ok(()))));
        t.join().unwrap();
    }
}
