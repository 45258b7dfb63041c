//! KeyBridge's SKF module: the GM/T 0016-2012 `SKF_*` C ABI over KeyBridge file-type keys.
//!
//! Built as `libkb_skf_module.so`, it lets any SKF-speaking application (a CA's signing
//! control, a bid tool) use a KeyBridge file key as if it were a USB key, and it lets
//! KeyBridge test its SKF loader (`kb-skf`) across a real `dlopen` boundary.
//!
//! - Device = one `<name>.kbkey` in the key directory: `$KEYBRIDGE_SKF_KEY_DIR`, else the
//!   KeyBridge user's key directory (the `file_key_dir` setting or its default, read by
//!   [`key_dir`] without the device service). Application = `KeyBridge`. Containers =
//!   the file key's.
//! - Exported: `SKF_WaitForDevEvent`, `SKF_CancelWaitForDevEvent`, `SKF_EnumDev`,
//!   `SKF_ConnectDev`, `SKF_DisConnectDev`, `SKF_GetDevInfo`, `SKF_EnumApplication`,
//!   `SKF_OpenApplication`, `SKF_CloseApplication`, `SKF_VerifyPIN`, `SKF_ChangePIN`,
//!   `SKF_GetPINInfo`, `SKF_UnblockPIN`, `SKF_ClearSecureState`, `SKF_EnumContainer`,
//!   `SKF_CreateContainer`, `SKF_DeleteContainer`, `SKF_OpenContainer`,
//!   `SKF_CloseContainer`, `SKF_GetContainerType`, `SKF_ImportCertificate`,
//!   `SKF_ExportCertificate`, `SKF_ExportPublicKey`, `SKF_GenECCKeyPair`,
//!   `SKF_ECCSignData`, and the vendor extension `SKF_ECCDecrypt`.
//! - Not exported (a caller resolving them gets no symbol): device authentication, file
//!   objects, RSA, symmetric/hash/MAC functions, `SKF_ImportSessionKey`,
//!   `SKF_ECCExportSessionKey`, `SKF_ImportECCKeyPair`.
//!
//! Handles are integers from a process-wide table ([`core`]); every entry point runs in
//! `catch_unwind` and checks its pointers ([`ffi`]).

#![cfg_attr(test, allow(clippy::panic, clippy::unwrap_used, clippy::expect_used))]

pub mod core;
#[allow(unsafe_code)]
pub mod ffi;
pub mod key_dir;
