//! A loaded PKCS#11 module, once per path per process.
//!
//! `C_Initialize` may be called once per process and module, and every user of a module
//! (the transport's watcher thread, each token's actor thread) shares that state, so
//! modules live in a process-wide registry and stay loaded until the process exits.

use crate::error::token_error;
use crate::mechanisms::Sm2Mechanisms;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::MechanismType;
use cryptoki::slot::{Slot, TokenInfo};
use kb_token::{Result, TokenError};
use kb_types::{Algorithm, Capabilities, DeviceId, DeviceInfo, TransportKind, UserVerification};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// A PKCS#11 module (a shared library implementing `C_GetFunctionList`), initialised.
#[derive(Debug)]
pub struct Pkcs11Module {
    path: PathBuf,
    stem: String,
    ctx: Pkcs11,
}

fn registry() -> &'static Mutex<HashMap<PathBuf, Arc<Pkcs11Module>>> {
    static R: OnceLock<Mutex<HashMap<PathBuf, Arc<Pkcs11Module>>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// Prefix a module failure with the path so the user knows which setting is wrong.
fn module_error(path: &Path, e: Error) -> TokenError {
    match token_error(e) {
        TokenError::Module(m) => TokenError::Module(format!("{}: {m}", path.display())),
        other => other,
    }
}

impl Pkcs11Module {
    /// Load and initialise the module at `path` (absolute), or return the instance this
    /// process already loaded. A missing file, a file that is not a shared library, or a
    /// library without `C_GetFunctionList` is [`TokenError::Module`] (`module_load_failed`).
    pub fn load(path: &Path) -> Result<Arc<Self>> {
        let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = reg.get(path) {
            return Ok(m.clone());
        }
        kb_token::check_module_path(path)?;
        let ctx = Pkcs11::new(path).map_err(|e| module_error(path, e))?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            // Someone else in this process (another library) initialised it: fine, it is shared.
            Ok(()) | Err(Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(module_error(path, e)),
        }
        let stem = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(|n| n.split('.').next().unwrap_or(n).to_string())
            .unwrap_or_else(|| "module".into());
        let m = Arc::new(Pkcs11Module { path: path.to_path_buf(), stem, ctx });
        reg.insert(path.to_path_buf(), m.clone());
        Ok(m)
    }

    /// The module's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn ctx(&self) -> &Pkcs11 {
        &self.ctx
    }

    /// Every token present, with what is shown about it before any PIN.
    pub fn tokens(&self) -> Result<Vec<(Slot, DeviceInfo)>> {
        let slots = self.ctx.get_slots_with_token().map_err(token_error)?;
        let mut out = Vec::with_capacity(slots.len());
        for slot in slots {
            // A token pulled out between the two calls is simply not there.
            match self.ctx.get_token_info(slot) {
                Ok(t) if t.token_initialized() => out.push((slot, self.device_info(slot, &t))),
                Ok(_) => {}
                Err(e) => match token_error(e) {
                    TokenError::Removed => {}
                    other => return Err(other),
                },
            }
        }
        Ok(out)
    }

    /// The slot currently holding the token with this device id.
    pub(crate) fn find(&self, id: &DeviceId) -> Result<(Slot, DeviceInfo)> {
        self.tokens()?.into_iter().find(|(_, info)| &info.id == id).ok_or(TokenError::Removed)
    }

    /// The stable device id of a token: `pkcs11:<module file stem>:<token serial>`.
    pub fn device_id(&self, serial: &str) -> DeviceId {
        DeviceId::new(TransportKind::Pkcs11, &format!("{}:{serial}", self.stem))
    }

    fn device_info(&self, slot: Slot, t: &TokenInfo) -> DeviceInfo {
        let serial = t.serial_number().trim().to_string();
        // A token without a serial still needs an id; the slot is the best we have.
        let local = if serial.is_empty() { format!("slot{}", slot.id()) } else { serial.clone() };
        let mechanisms = self.ctx.get_mechanism_list(slot).unwrap_or_default();
        DeviceInfo {
            id: self.device_id(&local),
            label: t.label().trim().to_string(),
            serial,
            manufacturer: t.manufacturer_id().trim().to_string(),
            model: t.model().trim().to_string(),
            transport: TransportKind::Pkcs11,
            capabilities: capabilities(&mechanisms, t),
        }
    }
}

/// What a token can do, from its mechanism list.
fn capabilities(mechanisms: &[MechanismType], t: &TokenInfo) -> Capabilities {
    let has = |m: MechanismType| mechanisms.contains(&m);
    let mut algorithms = Vec::new();
    if Sm2Mechanisms::find(mechanisms).is_some() {
        algorithms.push(Algorithm::Sm2);
    }
    if has(MechanismType::RSA_PKCS) {
        algorithms.extend([2048, 3072, 4096].map(|bits| Algorithm::Rsa { bits }));
    }
    if has(MechanismType::ECDSA) {
        algorithms.push(Algorithm::EcdsaP256);
    }
    Capabilities {
        algorithms,
        key_generation: !t.write_protected()
            && (has(MechanismType::RSA_PKCS_KEY_PAIR_GEN) || has(MechanismType::ECC_KEY_PAIR_GEN)),
        seals: false,
        // PIN entry on a reader's pad (protected authentication path) cannot go through us.
        so_pin: !t.protected_authentication_path(),
        user_verification: if t.protected_authentication_path() { UserVerification::OnMedium } else { UserVerification::HostPin },
    }
}
