#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kb_fuzz::crypto::sm4_modes(data);
});
