//! The ferrocable gem's native extension: glue between Ruby and the
//! ferrocable core. Rust does the serving; Ruby runs the application.

mod config;
mod convert;
mod errors;
mod fastlane;
mod gvl;
mod http_rpc;
mod server;

use magnus::{Error, Module, Object, Ruby, function, method};
use server::NativeServer;

#[magnus::init(name = "ferrocable_ext")]
fn init(ruby: &Ruby) -> Result<(), Error> {
    let ferrocable = ruby.define_module("Ferrocable")?;
    let native = ferrocable.define_module("Native")?;
    let class = native.define_class("Server", ruby.class_object())?;
    class.define_singleton_method("new", function!(NativeServer::new, 2))?;
    class.define_method("start", method!(NativeServer::start, 1))?;
    class.define_method("stop", method!(NativeServer::stop, 0))?;
    class.define_method("running?", method!(NativeServer::is_running, 0))?;
    class.define_method("port", method!(NativeServer::port, 0))?;
    class.define_method("next_call", method!(NativeServer::next_call, 1))?;
    class.define_method("next_calls", method!(NativeServer::next_calls, 2))?;
    class.define_method("reply", method!(NativeServer::reply, 2))?;
    class.define_method("broadcast", method!(NativeServer::broadcast, 2))?;
    class.define_method("publish", method!(NativeServer::publish, 1))?;
    class.define_method("deliver", method!(NativeServer::deliver, 2))?;
    class.define_method("transmit", method!(NativeServer::transmit, 2))?;
    class.define_method("close", method!(NativeServer::close, 1))?;
    class.define_method("client_count", method!(NativeServer::client_count, 0))?;
    class.define_method("metrics", method!(NativeServer::metrics, 0))?;
    native.define_singleton_method("resolve_config", function!(config::resolve_config, 2))?;
    native.define_singleton_method("http_rpc_call", function!(http_rpc::http_rpc_call, 3))?;
    native.define_singleton_method("http_rpc_reply", function!(http_rpc::http_rpc_reply, 2))?;
    native.define_singleton_method("jwt_encode", function!(fastlane::jwt_encode, 3))?;
    native.define_singleton_method("sign_stream", function!(fastlane::sign_stream, 2))?;
    native.const_set("CORE_VERSION", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
