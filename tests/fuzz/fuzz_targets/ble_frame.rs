#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kb_fuzz::ble::ble_frame(data);
});
