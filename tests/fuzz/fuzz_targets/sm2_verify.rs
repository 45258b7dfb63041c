#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kb_fuzz::crypto::sm2_verify(data);
});
