//! `Ferrocable::Native.http_rpc_call` / `http_rpc_reply`: the gem's HTTP RPC
//! endpoint (`Ferrocable::HTTPRPC`) reads a request body and writes a reply
//! body through the core's JSON mapping (`ferrocable::rpc::json`), so the
//! JSON form of the contract has one home, and the call and reply Hashes are
//! the ones the worker threads already handle (`convert`).

use crate::convert::{ReplyHash, call_to_hash};
use ferrocable::call_queue::Call;
use ferrocable::controller::CallKind;
use ferrocable::rpc::json;
use magnus::{Error, RHash, RString, Ruby};

/// The call a POST to `/<method>` carries, as the Hash a handler takes
/// (stateless, as the RPC server's calls are). Raises ArgumentError naming
/// what is wrong with the body.
pub fn http_rpc_call(
    ruby: &Ruby,
    method: String,
    body: RString,
    sid: String,
) -> Result<RHash, Error> {
    // SAFETY: the bytes are copied at once, while `body` is alive on the stack.
    let body = unsafe { body.as_slice().to_vec() };
    let request = json::decode_request(&method, &body)
        .map_err(|e| Error::new(ruby.exception_arg_error(), e))?;
    call_to_hash(
        ruby,
        Call {
            id: 0,
            sid,
            stateless: true,
            request,
        },
    )
}

/// The response body for a handler's reply Hash to a call of `method`.
pub fn http_rpc_reply(ruby: &Ruby, method: String, reply: RHash) -> Result<String, Error> {
    let kind = match method.as_str() {
        "connect" => CallKind::Connect,
        "command" => CallKind::Command,
        "disconnect" => CallKind::Disconnect,
        other => {
            return Err(Error::new(
                ruby.exception_arg_error(),
                format!("unknown RPC method {other:?}"),
            ));
        }
    };
    let reply = ReplyHash::read(ruby, reply)?.into_reply(kind);
    Ok(String::from_utf8(json::encode_reply(reply)).expect("JSON is UTF-8"))
}
