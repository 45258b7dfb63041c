//! The real BLE path: [`BtleCentral`] over btleplug (BlueZ over D-Bus on Linux; the
//! system bus is the one `DBUS_SYSTEM_BUS_ADDRESS` names, so the test rig can stand in a
//! mock BlueZ).
//!
//! btleplug is async; KeyBridge's tokens are synchronous (one actor thread per medium),
//! so the central owns a small tokio runtime and blocks on it. Calls made from inside
//! another runtime run on a scoped helper thread instead of panicking.

use crate::frame;
use crate::link::{
    Advertisement, BleCentral, BleError, BleLink, BluetoothState, CONTROL_POINT_LENGTH_UUID, CONTROL_POINT_UUID, OnLost, Result,
    SERVICE_UUID, STATUS_UUID,
};
use btleplug::api::{
    Central as _, CentralEvent, CentralState, Characteristic, Manager as _, Peripheral as _, ScanFilter, WriteType,
};
use btleplug::platform::{Adapter, Manager, Peripheral, PeripheralId};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use zeroize::Zeroizing;

/// Bound on one D-Bus call (BlueZ answers at once; a stuck bus must not hang the caller).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on connecting, service discovery included.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(40);

enum Msg {
    Fragment(Zeroizing<Vec<u8>>),
    Lost,
}

struct Hooks {
    tx: Sender<Msg>,
    up: Arc<AtomicBool>,
    on_lost: OnLost,
    peripheral: Peripheral,
}

type Links = Arc<Mutex<HashMap<PeripheralId, Hooks>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn failed(e: impl std::fmt::Display) -> BleError {
    BleError::Failed(e.to_string())
}

/// BlueZ through btleplug.
///
/// Cheap and quiet without Bluetooth: [`BtleCentral::new`] starts nothing; the tokio
/// runtime btleplug needs is made on first use, and only once BlueZ is known to be there.
/// Whether it is there is asked first on a short-lived private connection to the system
/// bus (`NameHasOwner("org.bluez")`, which never starts bluetoothd): no bus or no
/// bluetoothd is an instant 蓝牙不可用, with no thread, no task and no connection left
/// behind. btleplug's own bus connection is made once and kept (each of its sessions
/// spawns a task that holds its connection for good, so one per probe would leak).
pub struct BtleCentral {
    rt: OnceLock<tokio::runtime::Runtime>,
    manager: Mutex<Option<Manager>>,
    adapter: Mutex<Option<Adapter>>,
    links: Links,
    scanning: AtomicBool,
}

impl std::fmt::Debug for BtleCentral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BtleCentral").finish_non_exhaustive()
    }
}

impl BtleCentral {
    /// A central; nothing is asked of the Bluetooth stack, and no thread started, until
    /// it is used.
    pub fn new() -> Result<Self> {
        Ok(BtleCentral {
            rt: OnceLock::new(),
            manager: Mutex::new(None),
            adapter: Mutex::new(None),
            links: Links::default(),
            scanning: AtomicBool::new(false),
        })
    }

    /// The runtime, made on first use.
    fn rt(&self) -> Result<&tokio::runtime::Runtime> {
        if let Some(rt) = self.rt.get() {
            return Ok(rt);
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kb-ble-btleplug")
            .enable_all()
            .build()
            .map_err(failed)?;
        // Another thread may have made one meanwhile: keep the first, drop ours.
        if let Err(ours) = self.rt.set(rt) {
            ours.shutdown_background();
        }
        self.rt.get().ok_or(BleError::Lost)
    }

    /// Run a future on our runtime, from any thread.
    fn run<F: Future + Send>(&self, f: F) -> Result<F::Output>
    where
        F::Output: Send,
    {
        let rt = self.rt()?;
        Ok(if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|s| s.spawn(|| rt.block_on(f)).join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
        } else {
            rt.block_on(f)
        })
    }

    /// btleplug's session, made once BlueZ is known to be there, then kept.
    fn manager(&self) -> Result<Manager> {
        if let Some(m) = lock(&self.manager).clone() {
            return Ok(m);
        }
        bluez_present()?;
        let m = self.run(async {
            tokio::time::timeout(CALL_TIMEOUT, Manager::new())
                .await
                .map_err(|_| BleError::Unavailable("the Bluetooth service did not answer".into()))?
                .map_err(|e| BleError::Unavailable(format!("no Bluetooth service: {e}")))
        })??;
        let mut slot = lock(&self.manager);
        Ok(slot.get_or_insert(m).clone())
    }

    /// The first adapter, found once (and again after it went away).
    fn adapter(&self) -> Result<Adapter> {
        if let Some(a) = lock(&self.adapter).clone() {
            return Ok(a);
        }
        if lock(&self.manager).is_some() {
            // bluetoothd may have gone since the session was made: ask the bus first,
            // quietly, rather than time out on a service nobody owns.
            bluez_present()?;
        }
        let m = self.manager()?;
        let links = Arc::clone(&self.links);
        let a = self.run(async move {
            let found = tokio::time::timeout(CALL_TIMEOUT, async {
                let adapters = m.adapters().await.map_err(|e| BleError::Unavailable(format!("no Bluetooth service: {e}")))?;
                adapters.into_iter().next().ok_or_else(|| BleError::Unavailable("no Bluetooth adapter".into()))
            })
            .await
            .map_err(|_| BleError::Unavailable("the Bluetooth service did not answer".into()))??;
            let mut events = found.events().await.map_err(|e| BleError::Unavailable(e.to_string()))?;
            tokio::spawn(async move {
                while let Some(ev) = events.next().await {
                    match ev {
                        CentralEvent::DeviceDisconnected(id) => lost(&links, Some(&id)),
                        CentralEvent::StateUpdate(CentralState::PoweredOff) => lost(&links, None),
                        _ => {}
                    }
                }
                // The stream ended: the Bluetooth service went away.
                lost(&links, None);
            });
            Ok::<_, BleError>(found)
        })??;
        *lock(&self.adapter) = Some(a.clone());
        Ok(a)
    }
}

/// Whether BlueZ can be asked at all: a private connection to the system bus (closed
/// when dropped; nothing spawned) asks whether `org.bluez` has an owner. Asking never
/// activates bluetoothd, so a machine without it answers at once.
fn bluez_present() -> Result<()> {
    let conn = dbus::blocking::Connection::new_system()
        .map_err(|e| BleError::Unavailable(format!("no D-Bus system bus: {}", e.message().unwrap_or("unreachable"))))?;
    let bus = conn.with_proxy("org.freedesktop.DBus", "/org/freedesktop/DBus", CALL_TIMEOUT);
    let (owned,): (bool,) = bus
        .method_call("org.freedesktop.DBus", "NameHasOwner", ("org.bluez",))
        .map_err(|e| BleError::Unavailable(format!("the system bus did not answer: {}", e.message().unwrap_or("error"))))?;
    if owned { Ok(()) } else { Err(BleError::Unavailable("the Bluetooth service (bluetoothd) is not running".into())) }
}

/// A link (or, with `None`, every link) dropped by itself.
fn lost(links: &Links, id: Option<&PeripheralId>) {
    let gone: Vec<Hooks> = {
        let mut l = lock(links);
        match id {
            Some(id) => l.remove(id).into_iter().collect(),
            None => l.drain().map(|(_, h)| h).collect(),
        }
    };
    for h in gone {
        h.up.store(false, Ordering::SeqCst);
        let _ = h.tx.send(Msg::Lost);
        (h.on_lost)();
    }
}

/// The device BlueZ knows at `address` (seen by a scan, now or before).
async fn find_peripheral(a: &Adapter, address: &str) -> Result<Peripheral> {
    a.peripherals()
        .await
        .map_err(failed)?
        .into_iter()
        .find(|p| p.address().to_string().eq_ignore_ascii_case(address))
        .ok_or_else(|| BleError::UnknownKey(address.to_string()))
}

/// BlueZ's `Paired` property (btleplug does not expose it), read over the same system bus.
fn paired(ids: &[PeripheralId]) -> Vec<bool> {
    use dbus::blocking::stdintf::org_freedesktop_dbus::Properties;
    let Ok(conn) = dbus::blocking::Connection::new_system() else { return vec![false; ids.len()] };
    ids.iter()
        .map(|id| {
            conn.with_proxy("org.bluez", format!("/org/bluez/{id}"), Duration::from_secs(2))
                .get::<bool>("org.bluez.Device1", "Paired")
                .unwrap_or(false)
        })
        .collect()
}

impl BleCentral for BtleCentral {
    fn state(&self) -> BluetoothState {
        let a = match self.adapter() {
            Ok(a) => a,
            Err(BleError::Unavailable(reason)) => return BluetoothState::Unavailable { reason },
            Err(e) => return BluetoothState::Unavailable { reason: e.to_string() },
        };
        let st = self.run(async { tokio::time::timeout(CALL_TIMEOUT, a.adapter_state()).await });
        let reason = match st {
            Ok(Ok(Ok(CentralState::PoweredOn))) => return BluetoothState::Available,
            // Switched off: the adapter is still there (kept, with its event stream).
            Ok(Ok(Ok(CentralState::PoweredOff))) => {
                return BluetoothState::Unavailable { reason: "Bluetooth is switched off".to_string() };
            }
            Ok(Ok(Ok(_))) => return BluetoothState::Unavailable { reason: "the adapter's state is unknown".to_string() },
            Ok(Ok(Err(e))) => e.to_string(),
            Ok(Err(_)) => "the Bluetooth service did not answer".to_string(),
            Err(e) => e.to_string(),
        };
        // Gone, or the service stopped: look for an adapter afresh next time.
        *lock(&self.adapter) = None;
        BluetoothState::Unavailable { reason }
    }

    fn scan(&self, window: Duration) -> Result<Vec<Advertisement>> {
        let a = self.adapter()?;
        self.scanning.store(true, Ordering::SeqCst);
        let found = self.run(async {
            let scanned = async {
                a.start_scan(ScanFilter { services: crate::link::scan_services() }).await.map_err(failed)?;
                tokio::time::sleep(window).await;
                let mut out = Vec::new();
                for p in a.peripherals().await.map_err(failed)? {
                    let Ok(Some(props)) = p.properties().await else { continue };
                    // Ours, or one the registry knows (listed with what it needs); else not a key.
                    let Some(needs) = crate::link::needs_of(&props.services) else { continue };
                    let connected = p.is_connected().await.unwrap_or(false);
                    out.push((
                        p.id(),
                        Advertisement {
                            address: props.address.to_string(),
                            name: props.local_name,
                            rssi: props.rssi,
                            paired: false,
                            connected,
                            needs,
                        },
                    ));
                }
                Ok::<_, BleError>(out)
            };
            let r = tokio::time::timeout(window + CALL_TIMEOUT, scanned).await.unwrap_or(Err(BleError::Timeout));
            // Stop the scan whatever happened: BlueZ keeps scanning for a client that
            // forgot to.
            let _ = tokio::time::timeout(CALL_TIMEOUT, a.stop_scan()).await;
            r
        });
        self.scanning.store(false, Ordering::SeqCst);
        let found = found??;
        let ids: Vec<PeripheralId> = found.iter().map(|(id, _)| id.clone()).collect();
        Ok(found
            .into_iter()
            .zip(paired(&ids))
            .map(|((_, mut ad), p)| {
                ad.paired = p;
                ad
            })
            .collect())
    }

    fn connect(&self, address: &str, on_lost: OnLost) -> Result<Box<dyn BleLink>> {
        let a = self.adapter()?;
        let (tx, rx) = channel();
        let forward = tx.clone();
        let (p, cp, status, size) = self.run(async move {
            let p = find_peripheral(&a, address).await?;
            tokio::time::timeout(CONNECT_TIMEOUT, p.connect()).await.map_err(|_| BleError::Timeout)?.map_err(failed)?;
            let set_up = async {
                tokio::time::timeout(CALL_TIMEOUT, p.discover_services())
                    .await
                    .map_err(|_| BleError::Timeout)?
                    .map_err(failed)?;
                let chars = p.characteristics();
                let find = |u| chars.iter().find(|c: &&Characteristic| c.uuid == u && c.service_uuid == SERVICE_UUID).cloned();
                let (Some(cp), Some(status), Some(cpl)) =
                    (find(CONTROL_POINT_UUID), find(STATUS_UUID), find(CONTROL_POINT_LENGTH_UUID))
                else {
                    return Err(BleError::ServiceInvalid("the APDU service or one of its characteristics is missing".into()));
                };
                let raw =
                    tokio::time::timeout(CALL_TIMEOUT, p.read(&cpl)).await.map_err(|_| BleError::Timeout)?.map_err(failed)?;
                let size = frame::parse_control_point_length(&raw)?;
                // The stream first, so no notification is missed.
                let mut notes = p.notifications().await.map_err(failed)?;
                tokio::time::timeout(CALL_TIMEOUT, p.subscribe(&status)).await.map_err(|_| BleError::Timeout)?.map_err(failed)?;
                tokio::spawn(async move {
                    while let Some(n) = notes.next().await {
                        if n.uuid == STATUS_UUID && forward.send(Msg::Fragment(Zeroizing::new(n.value))).is_err() {
                            break;
                        }
                    }
                });
                Ok((cp, status, size))
            };
            match set_up.await {
                Ok((cp, status, size)) => Ok((p, cp, status, size)),
                Err(e) => {
                    let _ = tokio::time::timeout(CALL_TIMEOUT, p.disconnect()).await;
                    Err(e)
                }
            }
        })??;
        let up = Arc::new(AtomicBool::new(true));
        lock(&self.links).insert(p.id(), Hooks { tx, up: Arc::clone(&up), on_lost, peripheral: p.clone() });
        let handle = self.rt()?.handle().clone();
        Ok(Box::new(BtleLink { handle, links: Arc::clone(&self.links), p, cp, status, size, rx, up }))
    }

    fn disconnect_device(&self, address: &str) -> Result<()> {
        let a = self.adapter()?;
        let gone: Option<Hooks> = {
            let mut links = lock(&self.links);
            let id = links
                .iter()
                .find(|(_, h)| h.peripheral.address().to_string().eq_ignore_ascii_case(address))
                .map(|(id, _)| id.clone());
            id.and_then(|id| links.remove(&id))
        };
        if let Some(h) = &gone {
            h.up.store(false, Ordering::SeqCst);
        }
        self.run(async move {
            let p = find_peripheral(&a, address).await?;
            if p.is_connected().await.unwrap_or(false) {
                tokio::time::timeout(CALL_TIMEOUT, p.disconnect()).await.map_err(|_| BleError::Timeout)?.map_err(failed)?;
            }
            Ok(())
        })?
    }

    fn shutdown(&self) {
        let hooks: Vec<Hooks> = lock(&self.links).drain().map(|(_, h)| h).collect();
        let adapter = lock(&self.adapter).clone();
        if hooks.is_empty() && !self.scanning.load(Ordering::SeqCst) {
            return;
        }
        let closed = self.run(async {
            if let Some(a) = adapter {
                let _ = tokio::time::timeout(CALL_TIMEOUT, a.stop_scan()).await;
            }
            for h in hooks {
                h.up.store(false, Ordering::SeqCst);
                let _ = tokio::time::timeout(CALL_TIMEOUT, h.peripheral.disconnect()).await;
            }
        });
        if let Err(e) = closed {
            tracing::warn!("BLE: could not close the links at exit: {e}");
        }
    }
}

impl Drop for BtleCentral {
    fn drop(&mut self) {
        self.shutdown();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// One connected key through BlueZ.
struct BtleLink {
    handle: tokio::runtime::Handle,
    links: Links,
    p: Peripheral,
    cp: Characteristic,
    status: Characteristic,
    size: usize,
    rx: Receiver<Msg>,
    up: Arc<AtomicBool>,
}

impl BtleLink {
    fn block<F: Future + Send>(&self, f: F) -> F::Output
    where
        F::Output: Send,
    {
        if tokio::runtime::Handle::try_current().is_ok() {
            let handle = &self.handle;
            std::thread::scope(|s| s.spawn(|| handle.block_on(f)).join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
        } else {
            self.handle.block_on(f)
        }
    }
}

impl BleLink for BtleLink {
    fn control_point_length(&self) -> usize {
        self.size
    }

    fn write(&mut self, fragment: &[u8]) -> Result<()> {
        if !self.is_up() {
            return Err(BleError::Lost);
        }
        let r = self
            .block(async { tokio::time::timeout(CALL_TIMEOUT, self.p.write(&self.cp, fragment, WriteType::WithResponse)).await });
        match r {
            Ok(Ok(())) => Ok(()),
            _ if !self.is_up() => Err(BleError::Lost),
            Ok(Err(e)) => Err(failed(e)),
            Err(_) => Err(BleError::Timeout),
        }
    }

    fn recv(&mut self, timeout: Duration) -> Result<Zeroizing<Vec<u8>>> {
        match self.rx.recv_timeout(timeout) {
            Ok(Msg::Fragment(f)) => Ok(f),
            Ok(Msg::Lost) | Err(RecvTimeoutError::Disconnected) => {
                self.up.store(false, Ordering::SeqCst);
                Err(BleError::Lost)
            }
            Err(RecvTimeoutError::Timeout) if !self.is_up() => Err(BleError::Lost),
            Err(RecvTimeoutError::Timeout) => Err(BleError::Timeout),
        }
    }

    fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    fn close(&mut self) {
        // Unhooked first: the disconnect that follows is ours, not a loss.
        lock(&self.links).remove(&self.p.id());
        let was_up = self.up.swap(false, Ordering::SeqCst);
        if was_up {
            let (p, status) = (self.p.clone(), self.status.clone());
            self.block(async move {
                let _ = tokio::time::timeout(CALL_TIMEOUT, p.unsubscribe(&status)).await;
                let _ = tokio::time::timeout(CALL_TIMEOUT, p.disconnect()).await;
            });
        }
    }
}

impl Drop for BtleLink {
    fn drop(&mut self) {
        self.close();
    }
}
