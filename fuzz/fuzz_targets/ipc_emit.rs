#![no_main]
libfuzzer_sys::fuzz_target!(
    init: {
        // libfuzzer-sys aborts on any panic, even one the code under test catches; the host
        // catches arrow-ipc's panics on malformed messages by design, so keep the default
        // hook (a panic that escapes the host still aborts: the harness catches and aborts)
        let _ = std::panic::take_hook();
    },
    |data: &[u8]| agnes_runtime::fuzz::emit(data)
);
