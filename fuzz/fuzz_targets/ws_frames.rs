#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrocable_fuzz::targets::ws_frames(data));
