//! The fuzz targets' bodies, one function per target (`fuzz_targets/*.rs`
//! call them). `tests/fuzz_corpus.rs` in the main workspace includes
//! `targets.rs` too and runs the committed seed corpus through them as a
//! normal test, so CI checks the targets without building libFuzzer.

pub mod targets;
