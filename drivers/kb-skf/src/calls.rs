//! Every call into a vendor SKF module, and the only `unsafe` code of this crate.
//!
//! [`Api::load`] opens the library and resolves **every** function KeyBridge uses before
//! anything is called; a library without one is `module_load_failed` naming the function.
//! The wrappers below turn each C call into a safe method: arguments are owned Rust values
//! that outlive the call, output buffers are sized by the SKF two-call convention (NULL
//! buffer → the module reports the size), and results go through [`abi::token_error`].

use crate::abi::{
    self, Bool, CStrPtr, DevInfo, EccPublicKeyBlob, EccSignatureBlob, Handle, SAR_BUFFER_TOO_SMALL, SAR_OK, Ulong, token_error,
};
use kb_token::{Result, TokenError};
use libloading::Library;
use std::ffi::{CString, c_char};
use std::path::Path;
use zeroize::Zeroizing;

/// Zeroed room given past every out-parameter structure. Vendor modules built with
/// another packing, 64-bit `ULONG`s or a newer structure version write more than the
/// standard's layout (one wrote 296 bytes into the 294-byte packed `DEVINFO`): each such
/// parameter gets a buffer this much larger, and only the standard layout is read back.
const OUT_SLACK: usize = 4096;

/// Plain C data that a module fills in.
///
/// # Safety
/// Implement only for `Copy` types without padding-sensitive invariants for which every
/// bit pattern (in particular all zeros) is a valid value, with alignment at most 8.
unsafe trait Plain: Copy {}
// SAFETY: integers and structures of integers and byte arrays; any bytes are valid.
unsafe impl Plain for Ulong {}
// SAFETY: as above.
unsafe impl Plain for Bool {}
// SAFETY: as above.
unsafe impl Plain for DevInfo {}
// SAFETY: as above.
unsafe impl Plain for EccPublicKeyBlob {}
// SAFETY: as above.
unsafe impl Plain for EccSignatureBlob {}

/// A zeroed, 8-aligned out-parameter buffer of `size_of::<T>() + OUT_SLACK` bytes.
struct Out<T: Plain> {
    words: Vec<u64>,
    _t: std::marker::PhantomData<T>,
}

impl<T: Plain> Out<T> {
    fn new() -> Self {
        Out { words: vec![0u64; (std::mem::size_of::<T>() + OUT_SLACK).div_ceil(8)], _t: std::marker::PhantomData }
    }

    /// The pointer handed to the module: room for a `T` and [`OUT_SLACK`] bytes more.
    fn ptr(&mut self) -> *mut T {
        self.words.as_mut_ptr().cast()
    }

    /// The standard layout's bytes, whatever the module wrote after them.
    fn get(&self) -> T {
        // SAFETY: the buffer holds at least `size_of::<T>()` initialised bytes, 8-aligned
        // (enough for any `Plain` type), and every bit pattern is a valid `T`.
        unsafe { self.words.as_ptr().cast::<T>().read() }
    }
}

/// Handles are kept as integers (so tokens stay `Send`) and turned back into the
/// module's opaque pointer only at the call.
fn h(v: usize) -> Handle {
    v as Handle
}

macro_rules! functions {
    (
        required { $( $field:ident = $name:literal : fn($($arg:ty),*); )* }
        optional { $( $ofield:ident = $oname:literal : fn($($oarg:ty),*); )* }
    ) => {
        /// The module's functions, resolved once at load.
        struct Functions {
            $( $field: unsafe extern "C" fn($($arg),*) -> Ulong, )*
            $( $ofield: Option<unsafe extern "C" fn($($oarg),*) -> Ulong>, )*
        }

        /// Functions a module must export to be used at all.
        pub const REQUIRED_FUNCTIONS: &[&str] = &[$($name),*];
        /// Functions used when present (vendor extensions and events).
        pub const OPTIONAL_FUNCTIONS: &[&str] = &[$($oname),*];

        impl Functions {
            fn resolve(lib: &Library) -> std::result::Result<Self, &'static str> {
                Ok(Functions {
                    $(
                        // SAFETY: the symbol is declared by GM/T 0016-2012 with exactly this
                        // C signature; the pointer is copied out and only used while `lib`
                        // stays loaded (`Api` owns both and modules are never unloaded).
                        $field: unsafe {
                            *lib.get::<unsafe extern "C" fn($($arg),*) -> Ulong>(concat!($name, "\0").as_bytes())
                                .map_err(|_| $name)?
                        },
                    )*
                    $(
                        // SAFETY: as above, for the optional functions' documented signatures.
                        $ofield: unsafe {
                            lib.get::<unsafe extern "C" fn($($oarg),*) -> Ulong>(concat!($oname, "\0").as_bytes())
                                .ok()
                                .map(|s| *s)
                        },
                    )*
                })
            }
        }
    };
}

functions! {
    required {
        enum_dev = "SKF_EnumDev": fn(Bool, *mut c_char, *mut Ulong);
        connect_dev = "SKF_ConnectDev": fn(CStrPtr, *mut Handle);
        disconnect_dev = "SKF_DisConnectDev": fn(Handle);
        get_dev_info = "SKF_GetDevInfo": fn(Handle, *mut DevInfo);
        enum_application = "SKF_EnumApplication": fn(Handle, *mut c_char, *mut Ulong);
        open_application = "SKF_OpenApplication": fn(Handle, CStrPtr, *mut Handle);
        close_application = "SKF_CloseApplication": fn(Handle);
        verify_pin = "SKF_VerifyPIN": fn(Handle, Ulong, CStrPtr, *mut Ulong);
        change_pin = "SKF_ChangePIN": fn(Handle, Ulong, CStrPtr, CStrPtr, *mut Ulong);
        get_pin_info = "SKF_GetPINInfo": fn(Handle, Ulong, *mut Ulong, *mut Ulong, *mut Bool);
        unblock_pin = "SKF_UnblockPIN": fn(Handle, CStrPtr, CStrPtr, *mut Ulong);
        clear_secure_state = "SKF_ClearSecureState": fn(Handle);
        enum_container = "SKF_EnumContainer": fn(Handle, *mut c_char, *mut Ulong);
        create_container = "SKF_CreateContainer": fn(Handle, CStrPtr, *mut Handle);
        delete_container = "SKF_DeleteContainer": fn(Handle, CStrPtr);
        open_container = "SKF_OpenContainer": fn(Handle, CStrPtr, *mut Handle);
        close_container = "SKF_CloseContainer": fn(Handle);
        get_container_type = "SKF_GetContainerType": fn(Handle, *mut Ulong);
        import_certificate = "SKF_ImportCertificate": fn(Handle, Bool, *const u8, Ulong);
        export_certificate = "SKF_ExportCertificate": fn(Handle, Bool, *mut u8, *mut Ulong);
        export_public_key = "SKF_ExportPublicKey": fn(Handle, Bool, *mut u8, *mut Ulong);
        gen_ecc_key_pair = "SKF_GenECCKeyPair": fn(Handle, Ulong, *mut EccPublicKeyBlob);
        ecc_sign_data = "SKF_ECCSignData": fn(Handle, *const u8, Ulong, *mut EccSignatureBlob);
    }
    optional {
        ecc_decrypt = "SKF_ECCDecrypt": fn(Handle, *const u8, *mut u8, *mut Ulong);
        import_ecc_key_pair = "SKF_ImportECCKeyPair": fn(Handle, *const u8);
        wait_for_dev_event = "SKF_WaitForDevEvent": fn(*mut c_char, *mut Ulong, *mut Ulong);
        cancel_wait_for_dev_event = "SKF_CancelWaitForDevEvent": fn();
    }
}

/// A loaded SKF library with its functions.
pub(crate) struct Api {
    f: Functions,
    /// Kept loaded for as long as `f` may be called.
    _lib: Library,
}

fn check(rv: Ulong, function: &str) -> Result<()> {
    if rv == SAR_OK { Ok(()) } else { Err(token_error(rv, function, None)) }
}

/// A C string argument; `what` names it in the error when it contains NUL.
fn c_arg(s: &str, what: &'static str) -> Result<CString> {
    CString::new(s).map_err(|_| TokenError::Crypto(kb_crypto::CryptoError::InvalidParameter(what)))
}

/// A PIN as a C string, zeroized on drop.
fn c_pin(pin: &kb_types::Pin) -> Result<Zeroizing<Vec<u8>>> {
    let p = pin.expose();
    if p.contains(&0) {
        return Err(TokenError::PinPolicy("the PIN contains a NUL character"));
    }
    let mut v = Zeroizing::new(Vec::with_capacity(p.len() + 1));
    v.extend_from_slice(p);
    v.push(0);
    Ok(v)
}

/// Result of a PIN-checking call: `SAR_PIN_INCORRECT` carries the retry count.
fn pin_check(rv: Ulong, function: &str, retries: Ulong) -> Result<()> {
    if rv == SAR_OK { Ok(()) } else { Err(token_error(rv, function, Some(retries))) }
}

/// The SKF two-call convention: `call(NULL, &len)` for the size, then with a buffer.
/// A module that grows the answer between the calls gets a few more tries.
fn two_call(function: &str, mut call: impl FnMut(*mut u8, *mut Ulong) -> Ulong) -> Result<Vec<u8>> {
    let mut len: Ulong = 0;
    check(call(std::ptr::null_mut(), &mut len), function)?;
    for _ in 0..3 {
        let mut buf = vec![0u8; len as usize];
        let mut got = len;
        match call(buf.as_mut_ptr(), &mut got) {
            SAR_OK if got <= len => {
                buf.truncate(got as usize);
                return Ok(buf);
            }
            SAR_OK | SAR_BUFFER_TOO_SMALL => len = got.max(len.saturating_mul(2)).max(16),
            rv => return Err(token_error(rv, function, None)),
        }
    }
    Err(TokenError::Io(format!("{function}: the module keeps asking for a larger buffer")))
}

impl Api {
    /// Load the library at `path` and resolve every function KeyBridge needs.
    pub(crate) fn load(path: &Path) -> Result<Api> {
        // SAFETY: loading runs the library's initialisers. That is what loading a vendor
        // module configured by the user means; KeyBridge trusts the paths in its settings
        // exactly as it trusts its own binary.
        let lib = unsafe { Library::new(path) }
            .map_err(|e| TokenError::Module(format!("{}: cannot load the library: {e}", path.display())))?;
        let f = Functions::resolve(&lib)
            .map_err(|name| TokenError::Module(format!("{}: not a usable SKF module: {name} is missing", path.display())))?;
        Ok(Api { f, _lib: lib })
    }

    pub(crate) fn has_ecc_decrypt(&self) -> bool {
        self.f.ecc_decrypt.is_some()
    }

    pub(crate) fn has_dev_events(&self) -> bool {
        self.f.wait_for_dev_event.is_some() && self.f.cancel_wait_for_dev_event.is_some()
    }

    /// Names of the devices present.
    pub(crate) fn enum_dev(&self) -> Result<Vec<String>> {
        let f = self.f.enum_dev;
        // SAFETY: `buf` is NULL or holds `*len` writable bytes; `len` points to a live local.
        let b = two_call("SKF_EnumDev", |buf, len| unsafe { f(1, buf.cast(), len) })?;
        Ok(abi::parse_multi_string(&b))
    }

    pub(crate) fn connect_dev(&self, name: &str) -> Result<usize> {
        let name = c_arg(name, "device name")?;
        let mut dev: Handle = std::ptr::null_mut();
        // SAFETY: `name` is a NUL-terminated string and `dev` a live out-parameter.
        check(unsafe { (self.f.connect_dev)(name.as_ptr(), &mut dev) }, "SKF_ConnectDev")?;
        Ok(dev as usize)
    }

    pub(crate) fn disconnect_dev(&self, dev: usize) {
        // SAFETY: `dev` came from SKF_ConnectDev and is released exactly once.
        let _ = unsafe { (self.f.disconnect_dev)(h(dev)) };
    }

    pub(crate) fn dev_info(&self, dev: usize) -> Result<DevInfo> {
        let mut info = Out::<DevInfo>::new();
        // SAFETY: `info` is a live, zeroed buffer of a DEVINFO plus OUT_SLACK bytes.
        check(unsafe { (self.f.get_dev_info)(h(dev), info.ptr()) }, "SKF_GetDevInfo")?;
        Ok(info.get())
    }

    pub(crate) fn enum_applications(&self, dev: usize) -> Result<Vec<String>> {
        let f = self.f.enum_application;
        // SAFETY: as in `enum_dev`; `dev` is an open device handle.
        let b = two_call("SKF_EnumApplication", |buf, len| unsafe { f(h(dev), buf.cast(), len) })?;
        Ok(abi::parse_multi_string(&b))
    }

    pub(crate) fn open_application(&self, dev: usize, name: &str) -> Result<usize> {
        let name = c_arg(name, "application name")?;
        let mut app: Handle = std::ptr::null_mut();
        // SAFETY: NUL-terminated name, live out-parameter, open device handle.
        check(unsafe { (self.f.open_application)(h(dev), name.as_ptr(), &mut app) }, "SKF_OpenApplication")?;
        Ok(app as usize)
    }

    pub(crate) fn close_application(&self, app: usize) {
        // SAFETY: `app` came from SKF_OpenApplication and is closed exactly once.
        let _ = unsafe { (self.f.close_application)(h(app)) };
    }

    pub(crate) fn verify_pin(&self, app: usize, kind: Ulong, pin: &kb_types::Pin) -> Result<()> {
        let pin = c_pin(pin)?;
        let mut retries: Ulong = 0;
        // SAFETY: NUL-terminated PIN buffer and a live out-parameter.
        let rv = unsafe { (self.f.verify_pin)(h(app), kind, pin.as_ptr().cast(), &mut retries) };
        pin_check(rv, "SKF_VerifyPIN", retries)
    }

    pub(crate) fn change_pin(&self, app: usize, kind: Ulong, old: &kb_types::Pin, new: &kb_types::Pin) -> Result<()> {
        let (old, new) = (c_pin(old)?, c_pin(new)?);
        let mut retries: Ulong = 0;
        // SAFETY: NUL-terminated PIN buffers and a live out-parameter.
        let rv = unsafe { (self.f.change_pin)(h(app), kind, old.as_ptr().cast(), new.as_ptr().cast(), &mut retries) };
        pin_check(rv, "SKF_ChangePIN", retries)
    }

    /// `(max, remaining, is_default)`.
    pub(crate) fn pin_info(&self, app: usize, kind: Ulong) -> Result<(Ulong, Ulong, bool)> {
        let (mut max, mut left, mut default) = (Out::<Ulong>::new(), Out::<Ulong>::new(), Out::<Bool>::new());
        // SAFETY: three live out-parameter buffers, each with OUT_SLACK bytes to spare.
        check(unsafe { (self.f.get_pin_info)(h(app), kind, max.ptr(), left.ptr(), default.ptr()) }, "SKF_GetPINInfo")?;
        Ok((max.get(), left.get(), default.get() != 0))
    }

    pub(crate) fn unblock_pin(&self, app: usize, so: &kb_types::Pin, new_user: &kb_types::Pin) -> Result<()> {
        let (so, new_user) = (c_pin(so)?, c_pin(new_user)?);
        let mut retries: Ulong = 0;
        // SAFETY: NUL-terminated PIN buffers and a live out-parameter.
        let rv = unsafe { (self.f.unblock_pin)(h(app), so.as_ptr().cast(), new_user.as_ptr().cast(), &mut retries) };
        pin_check(rv, "SKF_UnblockPIN", retries)
    }

    pub(crate) fn clear_secure_state(&self, app: usize) {
        // SAFETY: an open application handle.
        let _ = unsafe { (self.f.clear_secure_state)(h(app)) };
    }

    pub(crate) fn enum_containers(&self, app: usize) -> Result<Vec<String>> {
        let f = self.f.enum_container;
        // SAFETY: as in `enum_dev`; `app` is an open application handle.
        let b = two_call("SKF_EnumContainer", |buf, len| unsafe { f(h(app), buf.cast(), len) })?;
        Ok(abi::parse_multi_string(&b))
    }

    pub(crate) fn create_container(&self, app: usize, name: &str) -> Result<usize> {
        let name = c_arg(name, "container name")?;
        let mut c: Handle = std::ptr::null_mut();
        // SAFETY: NUL-terminated name and a live out-parameter.
        check(unsafe { (self.f.create_container)(h(app), name.as_ptr(), &mut c) }, "SKF_CreateContainer")?;
        Ok(c as usize)
    }

    pub(crate) fn delete_container(&self, app: usize, name: &str) -> Result<()> {
        let name = c_arg(name, "container name")?;
        // SAFETY: NUL-terminated name.
        check(unsafe { (self.f.delete_container)(h(app), name.as_ptr()) }, "SKF_DeleteContainer")
    }

    pub(crate) fn open_container(&self, app: usize, name: &str) -> Result<usize> {
        let name = c_arg(name, "container name")?;
        let mut c: Handle = std::ptr::null_mut();
        // SAFETY: NUL-terminated name and a live out-parameter.
        check(unsafe { (self.f.open_container)(h(app), name.as_ptr(), &mut c) }, "SKF_OpenContainer")?;
        Ok(c as usize)
    }

    pub(crate) fn close_container(&self, c: usize) {
        // SAFETY: `c` came from SKF_OpenContainer/SKF_CreateContainer, closed once.
        let _ = unsafe { (self.f.close_container)(h(c)) };
    }

    pub(crate) fn container_type(&self, c: usize) -> Result<Ulong> {
        let mut t = Out::<Ulong>::new();
        // SAFETY: a live out-parameter buffer with OUT_SLACK bytes to spare.
        check(unsafe { (self.f.get_container_type)(h(c), t.ptr()) }, "SKF_GetContainerType")?;
        Ok(t.get())
    }

    pub(crate) fn import_certificate(&self, c: usize, sign: bool, der: &[u8]) -> Result<()> {
        let len = Ulong::try_from(der.len()).map_err(|_| TokenError::NotSupported("a certificate over 4 GiB".into()))?;
        // SAFETY: `der` is valid for `len` bytes for the duration of the call.
        check(unsafe { (self.f.import_certificate)(h(c), Bool::from(sign), der.as_ptr(), len) }, "SKF_ImportCertificate")
    }

    pub(crate) fn export_certificate(&self, c: usize, sign: bool) -> Result<Vec<u8>> {
        let f = self.f.export_certificate;
        // SAFETY: as in `enum_dev`.
        two_call("SKF_ExportCertificate", |buf, len| unsafe { f(h(c), Bool::from(sign), buf, len) })
    }

    pub(crate) fn export_public_key(&self, c: usize, sign: bool) -> Result<EccPublicKeyBlob> {
        let f = self.f.export_public_key;
        // SAFETY: as in `enum_dev`.
        let b = two_call("SKF_ExportPublicKey", |buf, len| unsafe { f(h(c), Bool::from(sign), buf, len) })?;
        blob_from_bytes(&b)
    }

    pub(crate) fn gen_ecc_key_pair(&self, c: usize) -> Result<EccPublicKeyBlob> {
        let mut blob = Out::<EccPublicKeyBlob>::new();
        // SAFETY: a live, zeroed ECCPUBLICKEYBLOB buffer with OUT_SLACK bytes to spare.
        check(unsafe { (self.f.gen_ecc_key_pair)(h(c), abi::SGD_SM2_1, blob.ptr()) }, "SKF_GenECCKeyPair")?;
        Ok(blob.get())
    }

    pub(crate) fn ecc_sign(&self, c: usize, e: &[u8; 32]) -> Result<EccSignatureBlob> {
        let mut sig = Out::<EccSignatureBlob>::new();
        // SAFETY: `e` holds 32 readable bytes; `sig` is a live, zeroed ECCSIGNATUREBLOB
        // buffer with OUT_SLACK bytes to spare.
        check(unsafe { (self.f.ecc_sign_data)(h(c), e.as_ptr(), 32, sig.ptr()) }, "SKF_ECCSignData")?;
        Ok(sig.get())
    }

    /// `SKF_ECCDecrypt` (vendor extension) of an `ECCCIPHERBLOB`.
    pub(crate) fn ecc_decrypt(&self, c: usize, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let f = self
            .f
            .ecc_decrypt
            .ok_or_else(|| TokenError::NotSupported("SM2 decryption: the SKF module has no SKF_ECCDecrypt".into()))?;
        let words = aligned(blob);
        let input = words.as_ptr().cast::<u8>();
        let mut len: Ulong = 0;
        // SAFETY: `input` points to the whole blob (header + CipherLen bytes), live for the
        // call; the first call passes NULL to learn the plaintext size.
        check(unsafe { f(h(c), input, std::ptr::null_mut(), &mut len) }, "SKF_ECCDecrypt")?;
        let mut out = Zeroizing::new(vec![0u8; len as usize]);
        let mut got = len;
        // SAFETY: `out` has `got` writable bytes.
        check(unsafe { f(h(c), input, out.as_mut_ptr(), &mut got) }, "SKF_ECCDecrypt")?;
        out.truncate((got as usize).min(len as usize));
        Ok(out)
    }

    /// `SKF_ImportECCKeyPair` of an `ENVELOPEDKEYBLOB` (whole: headers and `CipherLen`
    /// bytes). A module refusing the blob's content is [`TokenError::EnvelopedKey`].
    pub(crate) fn import_ecc_key_pair(&self, c: usize, blob: &[u8]) -> Result<()> {
        let f = self.f.import_ecc_key_pair.ok_or_else(|| {
            TokenError::NotSupported("importing an enveloped key: the SKF module has no SKF_ImportECCKeyPair".into())
        })?;
        let words = aligned(blob);
        // SAFETY: `words` holds the whole blob, 4-aligned, live for the call.
        let rv = unsafe { f(h(c), words.as_ptr().cast::<u8>()) };
        match rv {
            abi::SAR_INDATAERR | abi::SAR_INDATALENERR | abi::SAR_HASHNOTEQUALERR | abi::SAR_DECRYPTPADERR => {
                Err(TokenError::EnvelopedKey(format!("the SKF module refused it ({})", abi::sar_name(rv))))
            }
            _ => check(rv, "SKF_ImportECCKeyPair"),
        }
    }

    /// Block until the module reports a device event: `(device name, event)`.
    pub(crate) fn wait_for_dev_event(&self) -> Option<Result<(String, Ulong)>> {
        let f = self.f.wait_for_dev_event?;
        let mut name = [0u8; 256];
        let mut len = name.len() as Ulong;
        let mut event = Out::<Ulong>::new();
        // SAFETY: `name` has `len` writable bytes; `len` is live; `event` is a live
        // buffer with OUT_SLACK bytes to spare.
        let rv = unsafe { f(name.as_mut_ptr().cast(), &mut len, event.ptr()) };
        Some(check(rv, "SKF_WaitForDevEvent").map(|()| (abi::field_text(&name[..(len as usize).min(name.len())]), event.get())))
    }

    pub(crate) fn cancel_wait_for_dev_event(&self) {
        if let Some(f) = self.f.cancel_wait_for_dev_event {
            // SAFETY: no arguments.
            let _ = unsafe { f() };
        }
    }
}

/// A blob that is a C structure with 32-bit fields, copied into 4-byte aligned storage.
fn aligned(blob: &[u8]) -> Vec<u32> {
    let mut words = vec![0u32; blob.len().div_ceil(4)];
    for (w, chunk) in words.iter_mut().zip(blob.chunks(4)) {
        let mut b = [0u8; 4];
        b[..chunk.len()].copy_from_slice(chunk);
        *w = u32::from_ne_bytes(b);
    }
    words
}

/// An `ECCPUBLICKEYBLOB` from the bytes a module wrote.
fn blob_from_bytes(b: &[u8]) -> Result<EccPublicKeyBlob> {
    if b.len() != std::mem::size_of::<EccPublicKeyBlob>() {
        return Err(TokenError::NotSupported(format!("a {}-byte public key blob (not an SM2 ECCPUBLICKEYBLOB)", b.len())));
    }
    let mut bits = [0u8; 4];
    bits.copy_from_slice(&b[..4]);
    let mut blob = EccPublicKeyBlob { bit_len: Ulong::from_ne_bytes(bits), x: [0; 64], y: [0; 64] };
    blob.x.copy_from_slice(&b[4..68]);
    blob.y.copy_from_slice(&b[68..132]);
    Ok(blob)
}
