//! Embedded mode's controller: the gem's WebSocket server calling the
//! application in this process. Calls go through the [`CallQueue`] to the
//! Ruby worker threads, as stateful calls: the application keeps a live
//! connection object per socket and speaks the protocol itself (see
//! [`Controller::stateful`]), and a connect that succeeds after its caller
//! gave up gets a Disconnect.

use crate::call_queue::CallQueue;
use crate::controller::{CallError, Controller, Reply, Request};
use futures_util::future::BoxFuture;
use std::sync::Arc;

pub struct Embedded {
    queue: Arc<CallQueue>,
}

impl Embedded {
    pub fn new(queue: Arc<CallQueue>) -> Self {
        Embedded { queue }
    }
}

impl Controller for Embedded {
    fn stateful(&self) -> bool {
        true
    }

    fn call(&self, sid: &str, request: Request) -> BoxFuture<'static, Result<Reply, CallError>> {
        let (queue, sid) = (self.queue.clone(), sid.to_owned());
        Box::pin(async move { queue.submit(&sid, false, request).await })
    }
}
