//! The exported `SKF_*` functions: the only `unsafe` code of this crate.
//!
//! Each entry point checks its pointers (NULL → `SAR_INVALIDPARAMERR`), copies C inputs
//! into Rust values, calls [`crate::core`], and writes outputs back; all of it inside
//! `catch_unwind`, so a panic becomes `SAR_UNKNOWNERR` and never unwinds into C. Variable
//! outputs follow the SKF two-call convention: a NULL buffer returns the size in the
//! length argument; a buffer too small returns `SAR_BUFFER_TOO_SMALL` with the size.
//! Handles are the table's integers cast to `void *`.

use crate::core::{self, Fail, Res};
use kb_skf::abi::*;
use kb_types::Pin;
use std::ffi::{CStr, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Run an entry point: its outcome as a `SAR_*`, a panic as `SAR_UNKNOWNERR`.
fn run(f: impl FnOnce() -> Res<()>) -> Ulong {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => SAR_OK,
        Ok(Err(e)) => e.code(),
        Err(_) => SAR_UNKNOWNERR,
    }
}

fn handle(h: Handle) -> usize {
    h as usize
}

/// A NUL-terminated UTF-8 input string.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that stays valid for `'a`.
unsafe fn in_str<'a>(p: *const c_char) -> Res<&'a str> {
    if p.is_null() {
        return Err(Fail::Sar(SAR_INVALIDPARAMERR));
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    unsafe { CStr::from_ptr(p) }.to_str().map_err(|_| Fail::Sar(SAR_INVALIDPARAMERR))
}

/// A PIN argument, copied into a zeroizing [`Pin`].
///
/// # Safety
/// As [`in_str`].
unsafe fn in_pin(p: *const c_char) -> Res<Pin> {
    // SAFETY: forwarded contract.
    Ok(Pin::new(unsafe { in_str(p) }?.to_string()))
}

/// `len` readable bytes at `p` (`len` may be 0 with any `p`).
///
/// # Safety
/// `p` is NULL or valid for `len` bytes for `'a`.
unsafe fn in_bytes<'a>(p: *const u8, len: Ulong) -> Res<&'a [u8]> {
    if p.is_null() {
        return Err(Fail::Sar(SAR_INVALIDPARAMERR));
    }
    // SAFETY: non-NULL and valid for `len` bytes per the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(p, len as usize) })
}

/// Write one output value.
///
/// # Safety
/// `p` is NULL or valid for writing a `T` (any alignment).
unsafe fn out<T>(p: *mut T, v: T) -> Res<()> {
    if p.is_null() {
        return Err(Fail::Sar(SAR_INVALIDPARAMERR));
    }
    // SAFETY: non-NULL and writable per the caller's contract; unaligned write allowed.
    unsafe { p.write_unaligned(v) };
    Ok(())
}

/// Write an optional output value (NULL = the caller does not want it).
///
/// # Safety
/// As [`out`].
unsafe fn out_opt<T>(p: *mut T, v: T) {
    if !p.is_null() {
        // SAFETY: non-NULL and writable per the caller's contract.
        unsafe { p.write_unaligned(v) };
    }
}

/// The two-call convention for a byte output.
///
/// # Safety
/// `len` is NULL or valid; `buf` is NULL or valid for `*len` bytes.
unsafe fn out_bytes(data: &[u8], buf: *mut u8, len: *mut Ulong) -> Res<()> {
    if len.is_null() {
        return Err(Fail::Sar(SAR_INVALIDPARAMERR));
    }
    let need = Ulong::try_from(data.len()).map_err(|_| Fail::Sar(SAR_MEMORYERR))?;
    // SAFETY: `len` is non-NULL and valid per the caller's contract.
    let have = unsafe { len.read_unaligned() };
    // SAFETY: as above.
    unsafe { len.write_unaligned(need) };
    if buf.is_null() {
        return Ok(());
    }
    if have < need {
        return Err(Fail::Sar(SAR_BUFFER_TOO_SMALL));
    }
    // SAFETY: `buf` holds at least `have >= need` bytes and does not overlap `data` (ours).
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), buf, data.len()) };
    Ok(())
}

/// A PIN function's outcome, with the retry count written on a PIN failure.
///
/// # Safety
/// `retries` is NULL or valid for writing.
unsafe fn pin_result(r: Res<()>, retries: *mut Ulong) -> Res<()> {
    if let Err(e) = &r
        && let Some(n) = e.retries()
    {
        // SAFETY: forwarded contract.
        unsafe { out_opt(retries, n) };
    }
    r
}

fn new_handle(h: usize) -> Handle {
    h as Handle
}

// --- device management -----------------------------------------------------------------

/// `ULONG SKF_WaitForDevEvent(LPSTR szDevName, ULONG *pulDevNameLen, ULONG *pulEvent)`.
/// Blocks until a key file is added (event 1) or removed (event 2).
///
/// # Safety
/// GM/T 0016 pointer contract (`szDevName` holds `*pulDevNameLen` bytes).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn SKF_WaitForDevEvent(name: *mut c_char, name_len: *mut Ulong, event: *mut Ulong) -> Ulong {
    run(|| {
        if name.is_null() || name_len.is_null() || event.is_null() {
            return Err(Fail::Sar(SAR_INVALIDPARAMERR));
        }
        let (dev, ev) = core::wait_for_dev_event()?;
        let mut bytes = dev.into_bytes();
        bytes.push(0);
        // SAFETY: checked non-NULL above; sizes per the contract.
        unsafe {
            out_bytes(&bytes, name.cast(), name_len)?;
            out(event, ev)
        }
    })
}

/// `ULONG SKF_CancelWaitForDevEvent(void)`.
#[unsafe(no_mangle)]
pub extern "C" fn SKF_CancelWaitForDevEvent() -> Ulong {
    run(|| {
        core::cancel_wait();
        Ok(())
    })
}

/// `ULONG SKF_EnumDev(BOOL bPresent, LPSTR szNameList, ULONG *pulSize)`.
///
/// # Safety
/// GM/T 0016 pointer contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn SKF_EnumDev(_present: Bool, list: *mut c_char, size: *mut Ulong) -> Ulong {
    // SAFETY: forwarded pointer contract.
    run(|| unsafe { out_bytes(&core::enum_dev()?, list.cast(), size) })
}

/// `ULONG SKF_ConnectDev(LPSTR szName, DEVHANDLE *phDev)`.
///
/// # Safety
/// GM/T 0016 pointer contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn SKF_ConnectDev(name: *const c_char, dev: *mut Handle) -> Ulong {
    run(|| {
        if dev.is_null() {
            return Err(Fail::Sar(SAR_INVALIDPARAMERR));
        }
        // SAFETY: forwarded pointer contract; `dev` checked non-NULL.
        unsafe { out(dev, new_handle(core::connect_dev(in_str(name)?)?)) }
    })
}

/// `ULONG SKF_DisConnectDev(DEVHANDLE hDev)`.
#[unsafe(no_mangle)]
pub extern "C" fn SKF_DisConnectDev(dev: Handle) -> Ulong {
    run(|| core::disconnect_dev(handle(dev)))
}

/// `ULONG SKF_GetDevInfo(DEVHANDLE hDev, DEVINFO *pDevInfo)`.
///
/// # Safety
/// GM/T 0016 pointer contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn SKF_GetDevInfo(dev: Handle, info: *mut DevInfo) -> Ulong {
    run(|| {
        if info.is_null() {
            return Err(Fail::Sar(SAR_INVALIDPARAMERR));
        }
        // SAFETY: forwarded pointer contract.
        unsafe { out(info, core::dev_info(handle(dev))?) }
    })
}

/// `ULONG SKF_GetDevState(LPSTR szDevName, ULONG *pulDevState)`: `DEV_PRESENT_STATE` (1)
/// when the key file is there, else `DEV_ABSENT_STATE` (0).
///
/// # Safety
/// GM/T 0016 pointer contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn SKF_GetDevState(name: *const c_char, state: *mut Ulong) -> Ulong {
    // SAFETY: forwarded pointer contract.
    run(|| unsafe { out(state, core::dev_state(in_str(name)?)?) })
}

/// `ULONG SKF_LockDev(DEVHANDLE hDev, ULONG ulTimeOut)`.
#[unsafe(no_mangle)]
pub extern "C" fn SKF_LockDev(dev: Handle, timeout_ms: Ulong) -> Ulong {
    run(|| core::lock_dev(handle(dev), timeout_ms))
}

/// `ULONG SKF_UnlockDev(DEVHANDLE hDev)`.
#[unsafe(no_mangle)]
pub extern "C" fn SKF_UnlockDev(dev: Handle) -> Ulong {
    run(|| core::unlock_dev(handle(dev)))
}

/// `ULONG SKF_GenRandom(DEVHANDLE hDev, BYTE *pbRandom, ULONG ulRandomLen)`.
///
/// # Safety
/// GM/T 0016 pointer contract (`pbRandom` holds `ulRandomLen` bytes).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn SKF_GenRandom(dev: Handle, random: *mut u8, len: Ulong) -> Ulong {
    run(|| {
        if random.is_null() {
            return Err(Fail::Sar(SAR_INVALIDPARAMERR));
        }
        let r = core::gen_random(handle(dev), len as usize)?;
        // SAFETY: `random` holds `len` = `r.len()` writable bytes per the contract.
        unsafe { std::ptr::copy_nonoverlapping(r.as_ptr(), random, r.len()) };
        Ok(())
    })
}

/// `ULONG SKF_DevAuth(DEVHANDLE hDev, BYTE *pbAuthData, ULONG ulLen)`.
///
/// # Safety
/// GM/T 0016 pointer contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn SKF_DevAuth(dev: Handle, auth: *const u8, len: Ulong) -> Ulong {
    // SAFETY: forwarded pointer contract.
    run(|| core::dev_auth(handle(dev), unsafe { in_bytes(auth, len) }?))
}

/// `ULONG SKF_ChangeDevAuthKey(DEVHANDLE hDev, BYTE *pbKeyValue, ULONG ulKeyLen)`.
///
/// # Safety
/// GM/T 0016 pointer contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn SKF_ChangeDevAuthKey(dev: Handle, key: *const u8, len: Ulong) -> Ulong {
    // SAFETY: forwarded pointer contract.
    run(|| core::change_dev_auth_key(handle(dev), unsafe { in_bytes(key, len) }?))
}

// --- symmetric keys and hashes ---------------------------------------------------------

/// `ULONG SKF_SetSymmKey(DEVHANDLE hDev, BYTE *pbKey, ULONG ulAlgID, HANDLE *phKey)`:
/// a 16-byte SM4 key, `SGD_SM4_ECB` or `SGD_SM4_CBC`.
///
/// # Safety
/// GM/T 0016 pointer contract (`pbKey` holds 16 bytes).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn SKF_SetSymmKey(dev: Handle, key: *const u8, alg: Ulong, out_key: *mut Handle) -> Ulong {
    run(|| {
        if out_key.is_null() {
            return Err(Fail::Sar(SAR_INVALIDPARAMERR));
        }
        // SAFETY: `key` holds 16 bytes per the contract.
        let k: &[u8; 16] = unsafe { in_bytes(key, 16) }?.try_into().map_err(|_| Fail::Sar(SAR_INVALIDPARAMERR))?;
        // SAFETY: checked non-NULL; writable per the contract.
        unsafe { out(out_key, new_handle(core::set_symm_key(handle(dev), k, alg)?)) }
    })
}

/// `ULONG SKF_EncryptInit(HANDLE hKey, BLOCKCIPHERPARAM EncryptParam)`.
#[unsafe(no_mangle)]
pub extern "C" fn SKF_EncryptInit(key: Handle, param: BlockCipherParam) -> Ulong {
    run(|| core::cipher_init(handle(key), &param, true))
}

/// `ULONG SKF_DecryptInit(HANDLE hKey, BLOCKCIPHERPARAM DecryptParam)`.
#[unsafe(no_mangle)]
pub extern "C" fn SKF_DecryptInit(key: Handle, param: BlockCipherParam) -> Ulong {
    run(|| core::cipher_init(handle(key), &param, false))
}

/// One step of a cipher operation with the two-call convention on its output: a NULL
/// output (or one smaller than the most the step can produce) reports that size and
/// leaves the operation as it was.
///
/// # Safety
/// `data` is valid for `len` bytes; `out_len` is NULL or valid; `output` is NULL or
/// valid for `*out_len` bytes.
unsafe fn cipher_step(
    key: Handle,
    encrypt: bool,
    step: core::Step,
    data: *const u8,
    len: Ulong,
    output: *mut u8,
    out_len: *mut Ulong,
) -> Res<()> {
    if out_len.is_null() {
        return Err(Fail::Sar(SAR_INVALIDPARAMERR));
    }
    // SAFETY: forwarded contract (`Final` passes an empty slice).
    let input = if len == 0 { &[][..] } else { unsafe { in_bytes(data, len) }? };
    let bound = core::cipher_out_len(handle(key), encrypt, step, input.len())?;
    let bound_c = Ulong::try_from(bound).map_err(|_| Fail::Sar(SAR_INDATALENERR))?;
    // SAFETY: `out_len` checked non-NULL; valid per the contract.
    let have = unsafe { out_len.read_unaligned() };
    if output.is_null() || have < bound_c {
        // SAFETY: as above.
        unsafe { out_len.write_unaligned(bound_c) };
        return if output.is_null() { Ok(()) } else { Err(Fail::Sar(SAR_BUFFER_TOO_SMALL)) };
    }
    let result = core::cipher(handle(key), encrypt, step, input)?;
    // SAFETY: `output` holds `have >= bound >= result.len()` bytes; `out_len` is valid.
    unsafe {
        std::ptr::copy_nonoverlapping(result.as_ptr(), output, result.len());
        out_len.write_unaligned(result.len() as Ulong);
    }
    Ok(())
}

macro_rules! cipher_entry_point {
    ($(#[$doc:meta])* $name:ident = ($encrypt:literal, $step:ident)) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// GM/T 0016 pointer contract.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(key: Handle, data: *const u8, len: Ulong, output: *mut u8, out_len: *mut Ulong) -> Ulong {
            // SAFETY: forwarded pointer contract.
            run(|| unsafe { cipher_step(key, $encrypt, core::Step::$step, data, len, output, out_len) })
        }
    };
    ($(#[$doc:meta])* $name:ident = ($encrypt:literal)) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// GM/T 0016 pointer contract.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(key: Handle, output: *mut u8, out_len: *mut Ulong) -> Ulong {
            // SAFETY: forwarded pointer contract; no input.
            run(|| unsafe { cipher_step(key, $encrypt, core::Step::Final, std::ptr::null(), 0, output, out_len) })
        }
    };
}

cipher_entry_point! {
    /// `ULONG SKF_Encrypt(HANDLE hKey, BYTE *pbData, ULONG ulDataLen, BYTE *pbEncryptedData, ULONG *pulEncryptedLen)`.
    SKF_Encrypt = (true, Whole)
}
cipher_entry_point! {
    /// `ULONG SKF_EncryptUpdate(HANDLE hKey, BYTE *pbData, ULONG ulDataLen, BYTE *pbEncryptedData, ULONG *pulEncryptedLen)`.
    SKF_EncryptUpdate = (true, Update)
}
cipher_entry_point! {
    /// `ULONG SKF_EncryptFinal(HANDLE hKey, BYTE *pbEncryptedData, ULONG *pulEncryptedDataLen)`.
    SKF_EncryptFinal = (true)
}
cipher_entry_point! {
    /// `ULONG SKF_Decrypt(HANDLE hKey, BYTE *pbEncryptedData, ULONG ulEncryptedLen, BYTE *pbData, ULONG *pulDataLen)`.
    SKF_Decrypt = (false, Whole)
}
cipher_entry_point! {
    /// `ULONG SKF_DecryptUpdate(HANDLE hKey, BYTE *pbEncryptedData, ULONG ulEncryptedLen, BYTE *pbData, ULONG *pulDataLen)`.
    SKF_DecryptUpdate = (false, Update)
}
cipher_entry_point! {
    /// `ULONG SKF_DecryptFinal(HANDLE hKey, BYTE *pbDecryptedData, ULONG *pulDecryptedDataLen)`.
    SKF_DecryptFinal = (false)
}

/// `ULONG SKF_DigestInit(DEVHANDLE hDev, ULONG ulAlgID, ECCPUBLICKEYBLOB *pPubKey, BYTE *pbID, ULONG ulIDLen, HANDLE *phHash)`:
/// SM3, with `ZA` of the key and ID first when both are given.
///
/// # Safety
/// GM/T 0016 pointer contract (`pPubKey` and `pbID` may be NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn SKF_DigestInit(
    dev: Handle,
    alg: Ulong,
    public_key: *const EccPublicKeyBlob,
    id: *const u8,
    id_len: Ulong,
    hash: *mut Handle,
) -> Ulong {
    run(|| {
        if hash.is_null() {
            return Err(Fail::Sar(SAR_INVALIDPARAMERR));
        }
        // SAFETY: NULL or a readable ECCPUBLICKEYBLOB per the contract (any alignment).
        let pk = (!public_key.is_null()).then(|| unsafe { public_key.read_unaligned() });
        // SAFETY: forwarded pointer contract.
        let id = if id.is_null() || id_len == 0 { &[][..] } else { unsafe { in_bytes(id, id_len) }? };
        // SAFETY: checked non-NULL.
        unsafe { out(hash, new_handle(core::digest_init(handle(dev), alg, pk.as_ref(), id)?)) }
    })
}

/// The 32-byte hash with the two-call convention (a NULL output asks the size and
/// leaves the hash as it was).
///
/// # Safety
/// `data` valid for `len` bytes; `out_len` NULL or valid; `output` NULL or valid for
/// `*out_len` bytes.
unsafe fn digest_finish(h: Handle, data: *const u8, len: Ulong, output: *mut u8, out_len: *mut Ulong) -> Res<()> {
    if out_len.is_null() {
        return Err(Fail::Sar(SAR_INVALIDPARAMERR));
    }
    if output.is_null() {
        // SAFETY: checked non-NULL.
        return unsafe { out(out_len, 32) };
    }
    // SAFETY: checked non-NULL.
    if unsafe { out_len.read_unaligned() } < 32 {
        // SAFETY: as above.
        unsafe { out_len.write_unaligned(32) };
        return Err(Fail::Sar(SAR_BUFFER_TOO_SMALL));
    }
    // SAFETY: forwarded pointer contract.
    let input = if len == 0 { &[][..] } else { unsafe { in_bytes(data, len) }? };
    let hash = core::digest(handle(h), input, true)?.ok_or(Fail::Sar(SAR_NOTINITIALIZEERR))?;
    // SAFETY: `output` holds at least 32 bytes; `out_len` is valid.
    unsafe { out_bytes(&hash, output, out_len) }
}

/// `ULONG SKF_Digest(HANDLE hHash, BYTE *pbData, ULONG ulDataLen, BYTE *pbHashData, ULONG *pulHashLen)`.
///
/// # Safety
/// GM/T 0016 pointer contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn SKF_Digest(h: Handle, data: *const u8, len: Ulong, output: *mut u8, out_len: *mut Ulong) -> Ulong {
    // SAFETY: forwarded pointer contract.
    run(|| unsafe { digest_finish(h, data, len, output, out_len) })
}

/// `ULONG SKF_DigestUpdate(HANDLE hHash, BYTE *pbData, ULONG ulDataLen)`.
///
/// # Safety
/// GM/T 0016 pointer contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn SKF_DigestUpdate(h: Handle, data: *const u8, len: Ulong) -> Ulong {
    run(|| {
        // SAFETY: forwarded pointer contract.
        let input = if len == 0 { &[][..] } else { unsafe { in_bytes(data, len) }? };
        core::digest(handle(h), input, false).map(|_| ())
    })
}

/// `ULONG SKF_DigestFinal(HANDLE hHash, BYTE *pHashData, ULONG *pulHashLen)`.
///
/// # Safety
/// GM/T 0016 pointer contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn SKF_DigestFinal(h: Handle, output: *mut u8, out_len: *mut Ulong) -> Ulong {
    // SAFETY: forwarded pointer contract; no input.
    run(|| unsafe { digest_finish(h, std::ptr::null(), 0, output, out_len) })
}

/// Both verification entry points: the same check for a software module.
///
/// # Safety
/// GM/T 0016 pointer contract.
unsafe fn verify(
    dev: Handle,
    public_key: *const EccPublicKeyBlob,
    data: *const u8,
    len: Ulong,
    sig: *const EccSignatureBlob,
) -> Res<()> {
    if public_key.is_null() || sig.is_null() {
        return Err(Fail::Sar(SAR_INVALIDPARAMERR));
    }
    // SAFETY: non-NULL, readable structures per the contract (any alignment).
    let (pk, sig) = unsafe { (public_key.read_unaligned(), sig.read_unaligned()) };
    // SAFETY: forwarded pointer contract.
    core::ecc_verify(handle(dev), &pk, unsafe { in_bytes(data, len) }?, &sig)
}

macro_rules! verify_entry_point {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// GM/T 0016 pointer contract.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(
            dev: Handle,
            public_key: *const EccPublicKeyBlob,
            data: *const u8,
            len: Ulong,
            sig: *const EccSignatureBlob,
        ) -> Ulong {
            // SAFETY: forwarded pointer contract.
            run(|| unsafe { verify(dev, public_key, data, len, sig) })
        }
    };
}

verify_entry_point! {
    /// `ULONG SKF_ECCVerify(DEVHANDLE hDev, ECCPUBLICKEYBLOB *pECCPubKeyBlob, BYTE *pbData, ULONG ulDataLen, ECCSIGNATUREBLOB *pSignature)`:
    /// `pbData` is the 32-byte `e`.
    SKF_ECCVerify
}
verify_entry_point! {
    /// `ULONG SKF_ExtECCVerify(DEVHANDLE hDev, ECCPUBLICKEYBLOB *pECCPubKeyBlob, BYTE *pbData, ULONG ulDataLen, ECCSIGNATUREBLOB *pSignature)`.
    SKF_ExtECCVerify
}

/// `ULONG SKF_CloseHandle(HANDLE hHandle)`: a session key or a hash.
#[unsafe(no_mangle)]
pub extern "C" fn SKF_CloseHandle(h: Handle) -> Ulong {
    run(|| core::close_handle(handle(h)))
}

// --- applications and PINs -------------------------------------------------------------

/// `ULONG SKF_EnumApplication(DEVHANDLE hDev, LPSTR szAppName, ULONG *pulSize)`.
///
/// # Safety
/// GM/T 0016 pointer contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn SKF_EnumApplication(dev: Handle, names: *mut c_char, size: *mut Ulong) -> Ulong {
    // SAFETY: forwarded pointer contract.
    run(|| unsafe { out_bytes(&core::enum_application(handle(dev))?, names.cast(), size) })
}

/// `ULONG SKF_OpenApplication(DEVHANDLE hDev, LPSTR szAppName, HAPPLICATION *phApplication)`.
///
/// # Safety
/// GM/T 0016 pointer contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn SKF_OpenApplication(dev: Handle, name: *const c_char, app: *mut Handle) -> Ulong {
    run(|| {
        if app.is_null() {
            return Err(Fail::Sar(SAR_INVALIDPARAMERR));
        }
        // SAFETY: forwarded pointer contract.
        unsafe { out(app, new_handle(core::open_application(handle(dev), in_str(name)?)?)) }
    })
}

/// `ULONG SKF_CloseApplication(HAPPLICATION hApplication)`.
#[unsafe(no_mangle)]
pub extern "C" fn SKF_CloseApplication(app: Handle) -> Ulong {
    run(|| core::close_application(handle(app)))
}

/// `ULONG SKF_VerifyPIN(HAPPLICATION hApplication, ULONG ulPINType, LPSTR szPIN, ULONG *pulRetryCount)`.
///
/// # Safety
/// GM/T 0016 pointer contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn SKF_VerifyPIN(app: Handle, pin_type: Ulong, pin: *const c_char, retries: *mut Ulong) -> Ulong {
    // SAFETY: forwarded pointer contract.
    run(|| unsafe { pin_result(in_pin(pin).and_then(|p| core::verify_pin(handle(app), pin_type, p)), retries) })
}

/// `ULONG SKF_ChangePIN(HAPPLICATION hApplication, ULONG ulPINType, LPSTR szOldPin, LPSTR szNewPin, ULONG *pulRetryCount)`.
///
/// # Safety
/// GM/T 0016 pointer contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn SKF_ChangePIN(
    app: Handle,
    pin_type: Ulong,
    old: *const c_char,
    new: *const c_char,
    retries: *mut Ulong,
) -> Ulong {
    run(|| {
        // SAFETY: forwarded pointer contract.
        unsafe {
            let r = in_pin(old).and_then(|o| in_pin(new).and_then(|n| core::change_pin(handle(app), pin_type, &o, n)));
            pin_result(r, retries)
        }
    })
}

/// `ULONG SKF_GetPINInfo(HAPPLICATION hApplication, ULONG ulPINType, ULONG *pulMaxRetryCount, ULONG *pulRemainRetryCount, BOOL *pbDefaultPin)`.
///
/// # Safety
/// GM/T 0016 pointer contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn SKF_GetPINInfo(
    app: Handle,
    pin_type: Ulong,
    max: *mut Ulong,
    remaining: *mut Ulong,
    default: *mut Bool,
) -> Ulong {
    run(|| {
        if max.is_null() || remaining.is_null() || default.is_null() {
            return Err(Fail::Sar(SAR_INVALIDPARAMERR));
        }
        let (m, r, d) = core::pin_info(handle(app), pin_type)?;
        // SAFETY: all three checked non-NULL; writable per the contract.
        unsafe {
            out(max, m)?;
            out(remaining, r)?;
            out(default, Bool::from(d))
        }
    })
}

/// `ULONG SKF_UnblockPIN(HAPPLICATION hApplication, LPSTR szAdminPIN, LPSTR szNewUserPIN, ULONG *pulRetryCount)`.
/// A wrong SO PIN reports the SO PIN's remaining tries.
///
/// # Safety
/// GM/T 0016 pointer contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn SKF_UnblockPIN(app: Handle, so: *const c_char, new_user: *const c_char, retries: *mut Ulong) -> Ulong {
    run(|| {
        // SAFETY: forwarded pointer contract.
        unsafe {
            let r = in_pin(so).and_then(|s| in_pin(new_user).and_then(|n| core::unblock_pin(handle(app), &s, &n)));
            pin_result(r, retries)
        }
    })
}

/// `ULONG SKF_ClearSecureState(HAPPLICATION hApplication)`.
#[unsafe(no_mangle)]
pub extern "C" fn SKF_ClearSecureState(app: Handle) -> Ulong {
    run(|| core::clear_secure_state(handle(app)))
}

// --- containers ------------------------------------------------------------------------

/// `ULONG SKF_EnumContainer(HAPPLICATION hApplication, LPSTR szContainerName, ULONG *pulSize)`.
///
/// # Safety
/// GM/T 0016 pointer contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn SKF_EnumContainer(app: Handle, names: *mut c_char, size: *mut Ulong) -> Ulong {
    // SAFETY: forwarded pointer contract.
    run(|| unsafe { out_bytes(&core::enum_container(handle(app))?, names.cast(), size) })
}

/// `ULONG SKF_CreateContainer(HAPPLICATION hApplication, LPSTR szContainerName, HCONTAINER *phContainer)`.
///
/// # Safety
/// GM/T 0016 pointer contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn SKF_CreateContainer(app: Handle, name: *const c_char, c: *mut Handle) -> Ulong {
    run(|| {
        if c.is_null() {
            return Err(Fail::Sar(SAR_INVALIDPARAMERR));
        }
        // SAFETY: forwarded pointer contract.
        unsafe { out(c, new_handle(core::create_container(handle(app), in_str(name)?)?)) }
    })
}

/// `ULONG SKF_DeleteContainer(HAPPLICATION hApplication, LPSTR szContainerName)`.
///
/// # Safety
/// GM/T 0016 pointer contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn SKF_DeleteContainer(app: Handle, name: *const c_char) -> Ulong {
    // SAFETY: forwarded pointer contract.
    run(|| core::delete_container(handle(app), unsafe { in_str(name) }?))
}

/// `ULONG SKF_OpenContainer(HAPPLICATION hApplication, LPSTR szContainerName, HCONTAINER *phContainer)`.
///
/// # Safety
/// GM/T 0016 pointer contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn SKF_OpenContainer(app: Handle, name: *const c_char, c: *mut Handle) -> Ulong {
    run(|| {
        if c.is_null() {
            return Err(Fail::Sar(SAR_INVALIDPARAMERR));
        }
        // SAFETY: forwarded pointer contract.
        unsafe { out(c, new_handle(core::open_container(handle(app), in_str(name)?)?)) }
    })
}

/// `ULONG SKF_CloseContainer(HCONTAINER hContainer)`.
#[unsafe(no_mangle)]
pub extern "C" fn SKF_CloseContainer(c: Handle) -> Ulong {
    run(|| core::close_container(handle(c)))
}

/// `ULONG SKF_GetContainerType(HCONTAINER hContainer, ULONG *pulContainerType)`: 0 empty,
/// 1 RSA, 2 ECC.
///
/// # Safety
/// GM/T 0016 pointer contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn SKF_GetContainerType(c: Handle, t: *mut Ulong) -> Ulong {
    run(|| {
        if t.is_null() {
            return Err(Fail::Sar(SAR_INVALIDPARAMERR));
        }
        // SAFETY: forwarded pointer contract.
        unsafe { out(t, core::container_type(handle(c))?) }
    })
}

/// `ULONG SKF_ImportCertificate(HCONTAINER hContainer, BOOL bSignFlag, BYTE *pbCert, ULONG ulCertLen)`.
///
/// # Safety
/// GM/T 0016 pointer contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn SKF_ImportCertificate(c: Handle, sign: Bool, cert: *const u8, len: Ulong) -> Ulong {
    // SAFETY: forwarded pointer contract.
    run(|| core::import_certificate(handle(c), sign != 0, unsafe { in_bytes(cert, len) }?))
}

/// `ULONG SKF_ExportCertificate(HCONTAINER hContainer, BOOL bSignFlag, BYTE *pbCert, ULONG *pulCertLen)`.
///
/// # Safety
/// GM/T 0016 pointer contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn SKF_ExportCertificate(c: Handle, sign: Bool, cert: *mut u8, len: *mut Ulong) -> Ulong {
    // SAFETY: forwarded pointer contract.
    run(|| unsafe { out_bytes(&core::export_certificate(handle(c), sign != 0)?, cert, len) })
}

/// `ULONG SKF_ExportPublicKey(HCONTAINER hContainer, BOOL bSignFlag, BYTE *pbBlob, ULONG *pulBlobLen)`:
/// an `ECCPUBLICKEYBLOB` (132 bytes).
///
/// # Safety
/// GM/T 0016 pointer contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn SKF_ExportPublicKey(c: Handle, sign: Bool, blob: *mut u8, len: *mut Ulong) -> Ulong {
    run(|| {
        let b = core::export_public_key(handle(c), sign != 0)?;
        let mut bytes = Vec::with_capacity(132);
        bytes.extend_from_slice(&b.bit_len.to_ne_bytes());
        bytes.extend_from_slice(&b.x);
        bytes.extend_from_slice(&b.y);
        // SAFETY: forwarded pointer contract.
        unsafe { out_bytes(&bytes, blob, len) }
    })
}

/// `ULONG SKF_GenECCKeyPair(HCONTAINER hContainer, ULONG ulAlgId, ECCPUBLICKEYBLOB *pBlob)`:
/// `SGD_SM2_1` only.
///
/// # Safety
/// GM/T 0016 pointer contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn SKF_GenECCKeyPair(c: Handle, alg: Ulong, blob: *mut EccPublicKeyBlob) -> Ulong {
    run(|| {
        if blob.is_null() {
            return Err(Fail::Sar(SAR_INVALIDPARAMERR));
        }
        // SAFETY: forwarded pointer contract.
        unsafe { out(blob, core::gen_ecc_key_pair(handle(c), alg)?) }
    })
}

/// `ULONG SKF_ECCSignData(HCONTAINER hContainer, BYTE *pbData, ULONG ulDataLen, ECCSIGNATUREBLOB *pSignature)`:
/// `pbData` is the 32-byte `e = SM3(ZA ‖ M)`.
///
/// # Safety
/// GM/T 0016 pointer contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn SKF_ECCSignData(c: Handle, data: *const u8, len: Ulong, sig: *mut EccSignatureBlob) -> Ulong {
    run(|| {
        if sig.is_null() {
            return Err(Fail::Sar(SAR_INVALIDPARAMERR));
        }
        // SAFETY: forwarded pointer contract.
        unsafe { out(sig, core::ecc_sign(handle(c), in_bytes(data, len)?)?) }
    })
}

/// `ULONG SKF_ImportECCKeyPair(HCONTAINER hContainer, ENVELOPEDKEYBLOB *pEnvelopedKeyBlob)`:
/// an SM2 encryption key pair sealed to the container's signing key.
///
/// # Safety
/// GM/T 0016 pointer contract: the blob holds its header, the `ECCCIPHERBLOB` header and
/// `CipherLen` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn SKF_ImportECCKeyPair(c: Handle, blob: *const u8) -> Ulong {
    run(|| {
        let head = ENVELOPED_KEY_HEADER_LEN + ECC_CIPHER_HEADER_LEN;
        // SAFETY: the headers are readable per the contract; NULL is checked by `in_bytes`.
        let header = unsafe { in_bytes(blob, head as Ulong) }?;
        let n = cipher_blob_len(&header[ENVELOPED_KEY_HEADER_LEN..])
            .filter(|n| *n > 0 && *n <= MAX_ECC_CIPHER_LEN)
            .ok_or(Fail::Sar(SAR_INDATALENERR))?;
        // SAFETY: the blob holds the headers and `CipherLen` bytes per the contract.
        let whole = unsafe { in_bytes(blob, (head + n) as Ulong) }?;
        core::import_ecc_key_pair(handle(c), whole)
    })
}

/// `ULONG SKF_ECCDecrypt(HCONTAINER hContainer, ECCCIPHERBLOB *pCipherText, BYTE *pbPlainText, ULONG *pulPlainTextLen)`:
/// the vendor extension (GmSSL's and several vendors' four-argument form) decrypting with
/// the container's encryption key.
///
/// # Safety
/// GM/T 0016 pointer contract: `pCipherText` holds the header and `CipherLen` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn SKF_ECCDecrypt(c: Handle, blob: *const u8, plain: *mut u8, plain_len: *mut Ulong) -> Ulong {
    run(|| {
        // SAFETY: the header is readable per the contract; NULL is checked by `in_bytes`.
        let header = unsafe { in_bytes(blob, ECC_CIPHER_HEADER_LEN as Ulong) }?;
        let n = cipher_blob_len(header).filter(|n| *n > 0 && *n <= MAX_ECC_CIPHER_LEN).ok_or(Fail::Sar(SAR_INDATALENERR))?;
        if plain.is_null() {
            // SM2 plaintext is as long as C2: answer the size query without the key.
            // SAFETY: forwarded pointer contract.
            return unsafe { out(plain_len, n as Ulong) };
        }
        // SAFETY: the blob holds the header and `CipherLen` bytes per the contract.
        let whole = unsafe { in_bytes(blob, (ECC_CIPHER_HEADER_LEN + n) as Ulong) }?;
        let pt = core::ecc_decrypt(handle(c), whole)?;
        // SAFETY: forwarded pointer contract.
        unsafe { out_bytes(&pt, plain, plain_len) }
    })
}
