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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call_queue::QueueOptions;
    use crate::controller::{ConnectReply, Env, Metered, Status};
    use crate::metrics::Metrics;
    use std::time::Duration;

    /// Embedded calls are counted like the binary's RPC calls once the
    /// server wraps the controller (`Server::start` does).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn metered_embedded_calls_are_counted() {
        let queue = CallQueue::new(QueueOptions::new(None, 16));
        let metrics = Arc::new(Metrics::new());
        let controller = Metered::new(Arc::new(Embedded::new(queue.clone())), metrics.clone());
        let worker = {
            let queue = queue.clone();
            std::thread::spawn(move || {
                for status in [Status::Success, Status::Error] {
                    let call = queue.next_call(Duration::from_secs(30)).expect("a call");
                    let kind = queue.kind_of(call.id).expect("someone waits");
                    assert_eq!(kind, call.request.kind());
                    assert!(!call.stateless, "embedded calls are stateful");
                    queue.reply(call.id, Reply::Connect(ConnectReply::new(status)));
                }
            })
        };
        assert!(controller.stateful());
        let ok = controller.connect("a", Env::default()).await.unwrap();
        assert_eq!(ok.status, Status::Success);
        let failed = controller.connect("b", Env::default()).await.unwrap();
        assert_eq!(failed.status, Status::Error);
        worker.join().unwrap();
        let text = metrics.render();
        assert!(text.contains("ferrocable_rpc_call_total 2\n"), "{text}");
        assert!(text.contains("ferrocable_rpc_error_total 1\n"), "{text}");
    }
}
