//! [`HidapiBackend`]: the real HID stack through the `hidapi` crate.
//!
//! On Linux KeyBridge uses hidapi's `linux-native-basic-udev` backend: devices are found
//! in sysfs and opened as `/dev/hidraw*`, in Rust, with no system library (the C backends
//! need libudev-dev or libhidapi-dev at build time and libudev at run time). macOS and
//! Windows use hidapi's own backends for those systems.

use crate::backend::{HidBackend, HidConnection, HidDeviceInfo, HidError};
use std::ffi::CString;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// The system's HID devices through hidapi. Cheap to create: hidapi is initialised on the
/// first [`enumerate`](HidBackend::enumerate) or [`open`](HidBackend::open).
#[derive(Default)]
pub struct HidapiBackend {
    api: Mutex<Option<hidapi::HidApi>>,
}

impl std::fmt::Debug for HidapiBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HidapiBackend")
    }
}

impl HidapiBackend {
    /// The backend (hidapi is initialised on first use).
    pub fn new() -> Self {
        Self::default()
    }

    /// hidapi, initialised (which enumerates once) or refreshed.
    fn api(&self, refresh: bool) -> Result<MutexGuard<'_, Option<hidapi::HidApi>>, HidError> {
        let mut guard = self.api.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_mut() {
            Some(api) if refresh => api.refresh_devices().map_err(|e| HidError::Io(e.to_string()))?,
            Some(_) => {}
            None => *guard = Some(hidapi::HidApi::new().map_err(|e| HidError::Io(e.to_string()))?),
        }
        Ok(guard)
    }
}

fn info(d: &hidapi::DeviceInfo) -> Option<HidDeviceInfo> {
    // Paths are ASCII device nodes (Linux) or system identifiers: anything else is skipped.
    let path = d.path().to_str().ok()?.to_owned();
    let text = |s: Option<&str>| s.unwrap_or_default().trim().to_owned();
    Some(HidDeviceInfo {
        path,
        vendor_id: d.vendor_id(),
        product_id: d.product_id(),
        serial: text(d.serial_number()),
        manufacturer: text(d.manufacturer_string()),
        product: text(d.product_string()),
        usage_page: d.usage_page(),
        usage: d.usage(),
        interface_number: d.interface_number(),
    })
}

impl HidBackend for HidapiBackend {
    fn enumerate(&self) -> Result<Vec<HidDeviceInfo>, HidError> {
        let guard = self.api(true)?;
        Ok(guard.as_ref().map(|api| api.device_list().filter_map(info).collect()).unwrap_or_default())
    }

    fn open(&self, path: &str) -> Result<Box<dyn HidConnection>, HidError> {
        // A path with a NUL byte names no device.
        let c = CString::new(path).map_err(|_| HidError::NotFound(path.to_owned()))?;
        let guard = self.api(false)?;
        let api = guard.as_ref().ok_or_else(|| HidError::Io("hidapi is not initialised".into()))?;
        let device = api.open_path(&c).map_err(|e| diagnose(path, e.to_string()))?;
        Ok(Box::new(HidapiConnection { device, path: path.to_owned() }))
    }
}

/// An open hidapi device.
struct HidapiConnection {
    device: hidapi::HidDevice,
    path: String,
}

impl HidConnection for HidapiConnection {
    fn write_report(&mut self, report: &[u8]) -> Result<(), HidError> {
        let n = self.device.write(report).map_err(|e| gone_or(&self.path, e.to_string()))?;
        if n != report.len() {
            return Err(HidError::Io(format!("short write: {n} of {} bytes", report.len())));
        }
        Ok(())
    }

    fn read_report(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, HidError> {
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        match self.device.read_timeout(buf, ms) {
            Ok(0) => Err(HidError::Timeout(timeout)),
            Ok(n) => Ok(n),
            Err(e) => Err(gone_or(&self.path, e.to_string())),
        }
    }
}

/// A failure on an open device: the device is gone if its path is, else `message`.
fn gone_or(path: &str, message: String) -> HidError {
    match diagnose(path, message) {
        HidError::NotFound(_) => HidError::Disconnected,
        other => other,
    }
}

/// hidapi reports failures as text. Say why opening `path` failed by asking the file
/// system (on Linux the path is a device node): gone, not permitted, or `message`.
fn diagnose(path: &str, message: String) -> HidError {
    #[cfg(target_os = "linux")]
    {
        let probe = std::fs::OpenOptions::new().read(true).write(true).open(path);
        classify(path, probe.err().map(|e| e.kind()), message)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        HidError::Io(message)
    }
}

/// The outcome of probing `path` (`None`: it opened) → the error to report.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn classify(path: &str, probe: Option<std::io::ErrorKind>, message: String) -> HidError {
    use std::io::ErrorKind;
    match probe {
        Some(ErrorKind::NotFound) => HidError::NotFound(path.to_owned()),
        Some(ErrorKind::PermissionDenied) => HidError::AccessDenied(path.to_owned()),
        _ => HidError::Io(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;

    #[test]
    fn classification() {
        let p = "/dev/hidraw7";
        assert_eq!(classify(p, Some(ErrorKind::NotFound), "m".into()), HidError::NotFound(p.into()));
        assert_eq!(classify(p, Some(ErrorKind::PermissionDenied), "m".into()), HidError::AccessDenied(p.into()));
        assert_eq!(classify(p, Some(ErrorKind::Other), "m".into()), HidError::Io("m".into()));
        assert_eq!(classify(p, None, "not a hidraw device".into()), HidError::Io("not a hidraw device".into()));
    }
}
