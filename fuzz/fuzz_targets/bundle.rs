#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gren_registry::fuzzing::bundle(data));
