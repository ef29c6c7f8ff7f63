#![forbid(unsafe_code)]
#![warn(missing_docs)]
//! The quorumlock Redlock core for JavaScript runtimes.
//!
//! This crate is the WebAssembly half of the npm package `quorumlock`: it runs the protocol
//! machines of [`quorumlock::proto`] over promises supplied by JavaScript executors, one per
//! Redis node. The public JavaScript API (`Redlock`, `Lock`, `using`, the error classes) lives in
//! `js/` and is the only caller of what is exported here; its inputs are checked there first,
//! and again here, so that no input ever makes the module trap.

mod driver;
mod host;
mod messages;
mod reply;
mod settings;
mod timer;
mod to_js;

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::futures::{future_to_promise, JsFuture};
use js_sys::{Array, Promise};
use quorumlock::proto::{Acquire, Config, Extend, Lease, Release};
use wasm_bindgen::prelude::*;

use driver::{drive, Driven};
pub use host::Transport;
use to_js::code;

struct Shared {
    transport: Transport,
    nodes: usize,
}

/// The protocol engine for one set of Redis nodes.
#[wasm_bindgen]
pub struct RedlockCore {
    shared: Rc<Shared>,
}

#[wasm_bindgen]
impl RedlockCore {
    /// An engine for `nodes` nodes reached through `transport`. Throws a `RangeError` when the
    /// options cannot be used.
    #[wasm_bindgen(constructor)]
    pub fn new(
        transport: Transport,
        nodes: u32,
        options: &JsValue,
    ) -> Result<RedlockCore, JsValue> {
        let nodes = usize::try_from(nodes).map_err(|_| range_error("too many nodes"))?;
        // The TTL comes with each acquire; check everything else against the longest one.
        let mut settings = settings::from_options(options).map_err(|e| range_error(&e.0))?;
        settings.ttl = Config::MAX_TTL;
        Config::new(nodes, settings).map_err(|e| range_error(&messages::config(&e)))?;
        Ok(Self {
            shared: Rc::new(Shared { transport, nodes }),
        })
    }

    /// Acquires `resources` with the settings in `options` (which include the TTL). Resolves
    /// with a [`HeldLock`]; rejects with `[code, message, report]`. When `cancel` settles first,
    /// the keys are released on every node and the promise rejects with code `ABORTED`.
    pub fn acquire(
        &self,
        resources: Array,
        options: &JsValue,
        cancel: Option<Promise>,
    ) -> Result<Promise, JsValue> {
        let mut names = Vec::with_capacity(resources.length() as usize);
        for (index, resource) in resources.iter().enumerate() {
            match resource.as_string() {
                Some(name) => names.push(name),
                None => return Err(type_error(&format!("resource {index} is not a string"))),
            }
        }
        let settings = settings::from_options(options).map_err(|e| range_error(&e.0))?;
        let config = Config::new(self.shared.nodes, settings)
            .map_err(|e| range_error(&messages::config(&e)))?;
        let (token, seed) = host::token_and_seed().map_err(|_| {
            JsValue::from(js_sys::Error::new("crypto.getRandomValues is unavailable"))
        })?;
        let mut acquire = Acquire::new(&config, names, token, seed, host::now())
            .map_err(|e| type_error(&messages::resources(&e)))?;
        let shared = self.shared.clone();
        Ok(future_to_promise(async move {
            let cancel = cancel.map(JsFuture::from);
            match drive(&shared.transport, &mut acquire, cancel).await {
                Driven::Done(Ok(lease)) => Ok(HeldLock::new(shared, config, lease).into()),
                Driven::Done(Err(error)) => Err(to_js::acquire_failure(&error)),
                Driven::Cancelled => {
                    // A SET sent before the cancel may still land: delete on every node.
                    let mut release =
                        Release::new(&config, acquire.resources(), acquire.token(), host::now());
                    let released = match drive(&shared.transport, &mut release, None).await {
                        Driven::Done(released) => to_js::report(&released.report),
                        Driven::Cancelled => JsValue::NULL,
                    };
                    Err(to_js::failure(
                        code::ABORTED,
                        "the acquire was aborted",
                        released,
                    ))
                }
            }
        }))
    }
}

struct HeldState {
    config: Config,
    lease: Lease,
}

/// A lock held on a quorum of nodes.
#[wasm_bindgen]
pub struct HeldLock {
    shared: Rc<Shared>,
    state: Rc<RefCell<HeldState>>,
}

impl HeldLock {
    fn new(shared: Rc<Shared>, config: Config, lease: Lease) -> Self {
        Self {
            shared,
            state: Rc::new(RefCell::new(HeldState { config, lease })),
        }
    }

    fn lease(&self) -> Lease {
        self.state.borrow().lease.clone()
    }
}

fn millis(duration: std::time::Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[wasm_bindgen]
impl HeldLock {
    /// The token stored under every key.
    pub fn value(&self) -> String {
        self.state.borrow().lease.token().as_str().to_owned()
    }

    /// The locked resources.
    pub fn resources(&self) -> Vec<String> {
        self.state.borrow().lease.resources().to_vec()
    }

    /// Validity granted by the last acquire or extend round, in milliseconds.
    #[wasm_bindgen(js_name = validityMs)]
    pub fn validity_ms(&self) -> f64 {
        millis(self.state.borrow().lease.validity())
    }

    /// Validity left now, in milliseconds (zero once expired).
    #[wasm_bindgen(js_name = remainingMs)]
    pub fn remaining_ms(&self) -> f64 {
        millis(self.state.borrow().lease.remaining(host::now()))
    }

    /// Milliseconds from now until an automatic extension should start (zero if overdue).
    #[wasm_bindgen(js_name = renewInMs)]
    pub fn renew_in_ms(&self) -> f64 {
        let renew_at = self.state.borrow().lease.renew_at();
        millis(renew_at.saturating_duration_since(host::now()))
    }

    /// How many times the lock was extended.
    pub fn extensions(&self) -> u32 {
        self.state.borrow().lease.extensions()
    }

    /// Per-node outcome of the last acquire or extend round.
    pub fn report(&self) -> JsValue {
        to_js::report(self.state.borrow().lease.report())
    }

    /// Sets the keys' TTL to `ttl_ms` from now if a quorum still holds them for us. Resolves
    /// with nothing; rejects with `[code, message, report]`. Throws a `RangeError` for a TTL
    /// the settings cannot use.
    pub fn extend(&self, ttl_ms: f64) -> Result<Promise, JsValue> {
        if !(ttl_ms.is_finite() && ttl_ms >= 0.0) {
            return Err(range_error("ttl must be a finite, non-negative number"));
        }
        let ttl = std::time::Duration::try_from_secs_f64(ttl_ms / 1000.0)
            .map_err(|_| range_error("ttl is out of range"))?;
        let config = self
            .state
            .borrow()
            .config
            .with_ttl(ttl)
            .map_err(|e| range_error(&messages::config(&e)))?;
        let mut extend = Extend::new(&config, &self.lease(), host::seed(), host::now());
        let shared = self.shared.clone();
        let state = self.state.clone();
        Ok(future_to_promise(async move {
            match drive(&shared.transport, &mut extend, None).await {
                Driven::Done(Ok(lease)) => {
                    *state.borrow_mut() = HeldState { config, lease };
                    Ok(JsValue::UNDEFINED)
                }
                Driven::Done(Err(error)) => Err(to_js::extend_failure(&error)),
                Driven::Cancelled => Err(to_js::failure(code::FAILED, "cancelled", JsValue::NULL)),
            }
        }))
    }

    /// Deletes the keys on every node that still holds them for us. Resolves with
    /// `[clean, report]`; never rejects.
    pub fn release(&self) -> Promise {
        let (config, lease) = {
            let state = self.state.borrow();
            (state.config.clone(), state.lease.clone())
        };
        let mut release = Release::for_lease(&config, &lease, host::now());
        let shared = self.shared.clone();
        future_to_promise(async move {
            let outcome = Array::new();
            if let Driven::Done(released) = drive(&shared.transport, &mut release, None).await {
                outcome.push(&JsValue::from_bool(released.is_clean()));
                outcome.push(&to_js::report(&released.report));
            }
            Ok(outcome.into())
        })
    }
}

fn range_error(message: &str) -> JsValue {
    js_sys::RangeError::new(message).into()
}

fn type_error(message: &str) -> JsValue {
    js_sys::TypeError::new(message).into()
}
