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
//! - Exported (49 functions): devices — `SKF_WaitForDevEvent`,
//!   `SKF_CancelWaitForDevEvent`, `SKF_EnumDev`, `SKF_ConnectDev`, `SKF_DisConnectDev`,
//!   `SKF_GetDevState`, `SKF_GetDevInfo`, `SKF_LockDev`, `SKF_UnlockDev`; access control —
//!   `SKF_DevAuth`, `SKF_ChangeDevAuthKey` ([`dev_auth`]), `SKF_VerifyPIN`,
//!   `SKF_ChangePIN`, `SKF_GetPINInfo`, `SKF_UnblockPIN`, `SKF_ClearSecureState`;
//!   applications — `SKF_EnumApplication`, `SKF_OpenApplication`, `SKF_CloseApplication`;
//!   containers — `SKF_EnumContainer`, `SKF_CreateContainer`, `SKF_DeleteContainer`,
//!   `SKF_OpenContainer`, `SKF_CloseContainer`, `SKF_GetContainerType`,
//!   `SKF_ImportCertificate`, `SKF_ExportCertificate`; cryptography — `SKF_GenRandom`,
//!   `SKF_ExportPublicKey`, `SKF_GenECCKeyPair`, `SKF_ImportECCKeyPair` (an SM2 encryption
//!   pair in an `ENVELOPEDKEYBLOB`, opened inside with the signing key), `SKF_ECCSignData`, `SKF_ECCVerify`,
//!   `SKF_ExtECCVerify`, `SKF_SetSymmKey`
//!   (SM4 ECB/CBC), `SKF_EncryptInit`, `SKF_Encrypt`, `SKF_EncryptUpdate`,
//!   `SKF_EncryptFinal`, `SKF_DecryptInit`, `SKF_Decrypt`, `SKF_DecryptUpdate`,
//!   `SKF_DecryptFinal`, `SKF_DigestInit` (SM3, with ZA when given a key and an ID),
//!   `SKF_Digest`, `SKF_DigestUpdate`, `SKF_DigestFinal`, `SKF_CloseHandle`; and the
//!   vendor extension `SKF_ECCDecrypt`.
//! - Not exported (a caller resolving them gets no symbol): application creation and
//!   deletion (a file key has one fixed application), file objects, RSA, MAC functions,
//!   `SKF_SetLabel`, `SKF_Transmit`, `SKF_ImportSessionKey`, `SKF_ECCExportSessionKey`,
//!   `SKF_ImportECCKeyPair`, `SKF_ExtECCSign`/`Encrypt`/`Decrypt`.
//!
//! Handles are integers from a process-wide table ([`core`]); every entry point runs in
//! `catch_unwind` and checks its pointers ([`ffi`]).

#![cfg_attr(test, allow(clippy::panic, clippy::unwrap_used, clippy::expect_used))]

pub mod core;
pub mod dev_auth;
#[allow(unsafe_code)]
pub mod ffi;
pub mod key_dir;
