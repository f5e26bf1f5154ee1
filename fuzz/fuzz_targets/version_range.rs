#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gren_registry_http::fuzzing::version_range(data));
