//! A loaded SKF module, once per path per process, and what it shows as media.

use crate::abi::{self, DevInfo};
use crate::calls::Api;
use kb_token::{Result, TokenError};
use kb_types::{Algorithm, Capabilities, DeviceId, DeviceInfo, TransportKind, UserVerification};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// An SKF module (a vendor's GM/T 0016 library, or `kb-skf-module`), loaded with every
/// function KeyBridge needs resolved. Modules stay loaded until the process exits: a
/// library cannot be unloaded safely while any thread may still be inside it.
pub struct SkfModule {
    path: PathBuf,
    api: Api,
}

impl std::fmt::Debug for SkfModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SkfModule").field("path", &self.path).finish()
    }
}

/// One medium: an application on a device (the application holds the PIN).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Medium {
    pub(crate) device: String,
    pub(crate) application: String,
    pub(crate) info: DeviceInfo,
}

fn registry() -> &'static Mutex<HashMap<PathBuf, Arc<SkfModule>>> {
    static R: OnceLock<Mutex<HashMap<PathBuf, Arc<SkfModule>>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

impl SkfModule {
    /// Load the module at `path` (absolute), or return the instance this process already
    /// loaded. A missing file, a file that is not a shared library, or a library missing
    /// any of [`crate::REQUIRED_FUNCTIONS`] is [`TokenError::Module`]
    /// (`module_load_failed`) naming the path and the function.
    pub fn load(path: &Path) -> Result<Arc<Self>> {
        let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = reg.get(path) {
            return Ok(m.clone());
        }
        kb_token::check_module_path(path)?;
        let m = Arc::new(SkfModule { path: path.to_path_buf(), api: Api::load(path)? });
        reg.insert(path.to_path_buf(), m.clone());
        Ok(m)
    }

    /// The module's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn api(&self) -> &Api {
        &self.api
    }

    /// Whether the module offers SM2 decryption (`SKF_ECCDecrypt`).
    pub fn can_decrypt(&self) -> bool {
        self.api.has_ecc_decrypt()
    }

    /// Whether the module reports device events (`SKF_WaitForDevEvent` and
    /// `SKF_CancelWaitForDevEvent`).
    pub fn has_device_events(&self) -> bool {
        self.api.has_dev_events()
    }

    /// Every medium present: each application of each device. A device that goes away
    /// between the calls is simply not there.
    pub(crate) fn media(&self) -> Result<Vec<Medium>> {
        let mut out = Vec::new();
        for device in self.api.enum_dev()? {
            match self.device_media(&device) {
                Ok(m) => out.extend(m),
                Err(TokenError::Removed) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn device_media(&self, device: &str) -> Result<Vec<Medium>> {
        let dev = Device::connect(self, device)?;
        let info = self.api.dev_info(dev.0)?;
        let apps = self.api.enum_applications(dev.0)?;
        let serial = match abi::field_text(&info.serial_number) {
            s if s.is_empty() => device.to_string(),
            s => s,
        };
        let many = apps.len() > 1;
        Ok(apps
            .into_iter()
            .map(|app| {
                let local = if many { format!("{serial}:{app}") } else { serial.clone() };
                Medium { device: device.to_string(), info: device_info(&info, &local, &serial), application: app }
            })
            .collect())
    }

    /// The medium with this id, now.
    pub(crate) fn find(&self, id: &DeviceId) -> Result<Medium> {
        self.media()?.into_iter().find(|m| &m.info.id == id).ok_or(TokenError::Removed)
    }
}

fn device_info(d: &DevInfo, local: &str, serial: &str) -> DeviceInfo {
    let label = match abi::field_text(&d.label) {
        l if l.is_empty() => serial.to_string(),
        l => l,
    };
    DeviceInfo {
        id: DeviceId::new(TransportKind::Skf, local),
        label,
        serial: serial.to_string(),
        manufacturer: abi::field_text(&d.manufacturer),
        model: abi::field_text(&d.issuer),
        transport: TransportKind::Skf,
        capabilities: Capabilities {
            algorithms: vec![Algorithm::Sm2],
            key_generation: true,
            seals: false,
            so_pin: true,
            user_verification: UserVerification::HostPin,
        },
    }
}

/// A connected device, disconnected on drop.
pub(crate) struct Device<'m>(pub(crate) usize, &'m SkfModule);

impl<'m> Device<'m> {
    pub(crate) fn connect(m: &'m SkfModule, name: &str) -> Result<Self> {
        Ok(Device(m.api.connect_dev(name)?, m))
    }
}

impl Drop for Device<'_> {
    fn drop(&mut self) {
        self.1.api.disconnect_dev(self.0);
    }
}
