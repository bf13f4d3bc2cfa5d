//! The fuzz targets (`fuzz/`, cargo-fuzz) as a normal test: every file of
//! the committed seed corpus (`fuzz/corpus/<target>/`) through the target's
//! function, and every regression input libFuzzer found
//! (`fuzz/regressions/<target>/`). CI runs this instead of building the
//! instrumented fuzz crate (see BENCHMARKS.md "Fuzzing" for what that costs).

#[path = "../fuzz/src/targets.rs"]
#[allow(dead_code)]
mod targets;

use std::path::Path;

fn run(target: &str, f: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut count = 0;
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("corpus entry").path();
            // A running fuzzer may reduce (delete) files of its corpus meanwhile.
            let Ok(data) = std::fs::read(&path) else {
                continue;
            };
            let outcome = std::panic::catch_unwind(|| f(&data));
            assert!(outcome.is_ok(), "{target} panicked on {}", path.display());
            count += 1;
        }
    }
    assert!(count > 0, "no seed corpus for {target}");
}

#[test]
fn client_frame() {
    run("client_frame", targets::client_frame);
}

#[test]
fn publication() {
    run("publication", targets::publication);
}

#[test]
fn http_broadcast() {
    run("http_broadcast", targets::http_broadcast);
}

#[test]
fn handshake() {
    run("handshake", targets::handshake);
}

#[test]
fn config_file() {
    run("config_file", targets::config_file);
}

#[test]
fn rpc_reply() {
    run("rpc_reply", targets::rpc_reply);
}

#[test]
fn ws_frames() {
    run("ws_frames", targets::ws_frames);
}
