//! The Ruby exception classes, defined in Ruby (lib/ferrocable/errors.rb)
//! and raised from Rust.

use magnus::{ExceptionClass, Module, RModule, Ruby};

fn lookup(ruby: &Ruby, name: &str) -> ExceptionClass {
    ruby.class_object()
        .const_get::<_, RModule>("Ferrocable")
        .and_then(|m| m.const_get::<_, ExceptionClass>(name))
        .unwrap_or_else(|_| ruby.exception_runtime_error())
}

pub fn error(ruby: &Ruby) -> ExceptionClass {
    lookup(ruby, "Error")
}

pub fn config_error(ruby: &Ruby) -> ExceptionClass {
    lookup(ruby, "ConfigError")
}
