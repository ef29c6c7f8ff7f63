//! A sleep future over the host's `setTimeout`.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use quorumlock::proto::Instant;
use wasm_bindgen::prelude::*;

use crate::host;

#[derive(Default)]
struct Shared {
    fired: bool,
    waker: Option<Waker>,
}

/// Resolves once `deadline` has passed. Dropping it clears the host timer: a pending timer
/// would keep Node's event loop (and a test run) alive for as long as the lock's TTL.
pub(crate) struct Sleep {
    deadline: Instant,
    shared: Rc<RefCell<Shared>>,
    armed: Option<Armed>,
}

struct Armed {
    handle: JsValue,
    // Kept alive until the timer is cleared or has fired.
    _callback: Closure<dyn FnMut()>,
}

impl Sleep {
    pub(crate) fn until(deadline: Instant) -> Self {
        Self {
            deadline,
            shared: Rc::default(),
            armed: None,
        }
    }

    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let now = host::now();
        if self.deadline <= now {
            return Poll::Ready(());
        }
        {
            let mut shared = self.shared.borrow_mut();
            if shared.fired {
                // Timers may fire a little early by the monotonic clock: arm again for the rest.
                shared.fired = false;
                drop(shared);
                self.disarm();
            } else {
                shared.waker = Some(cx.waker().clone());
            }
        }
        if self.armed.is_none() {
            self.shared.borrow_mut().waker = Some(cx.waker().clone());
            let shared = self.shared.clone();
            let callback = Closure::<dyn FnMut()>::new(move || {
                let waker = {
                    let mut shared = shared.borrow_mut();
                    shared.fired = true;
                    shared.waker.take()
                };
                if let Some(waker) = waker {
                    waker.wake();
                }
            });
            // Round up so the timer never fires before the deadline it stands for.
            let delay_ms = (self.deadline - now).as_secs_f64() * 1000.0;
            let handle = host::set_timeout(callback.as_ref(), delay_ms.ceil());
            self.armed = Some(Armed {
                handle,
                _callback: callback,
            });
        }
        Poll::Pending
    }
}

impl Sleep {
    fn disarm(&mut self) {
        if let Some(armed) = self.armed.take() {
            host::clear_timeout(&armed.handle);
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.disarm();
    }
}
