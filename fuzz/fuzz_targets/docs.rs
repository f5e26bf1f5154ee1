#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gren_registry_core::docs::fuzzing::reader(data));
