#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| agnes_runtime::fuzz::connector_toml(data));
