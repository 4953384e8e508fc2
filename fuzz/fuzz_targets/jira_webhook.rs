#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| agnes_server::fuzz::jira_webhook(data));
