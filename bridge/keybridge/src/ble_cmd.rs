//! `keybridge ble scan|connect|disconnect|forget`: BLE keys (蓝牙Key), docs/ble-keys.md.
//!
//! The CLI holds a link only while it runs: `connect` connects, reads the key's card and
//! certificates, remembers the key (`<data dir>/ble-keys.json`) and closes the link at
//! exit; the desktop app and `keybridge serve` host BLE keys and reconnect the remembered
//! keys set to (`--auto-reconnect`) while they run.

use crate::ctx::App;
use crate::output::{CliError, CliResult};
use clap::{Args, Subcommand};
use kb_ble::{BleKeyListing, BleTransport, BluetoothState, SCAN_WINDOW};
use kb_token::Token;
use kb_types::{ContainerInfo, DeviceInfo, ErrorCode};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args)]
pub(crate) struct BleArgs {
    #[command(subcommand)]
    cmd: BleCmd,
}

#[derive(Subcommand)]
enum BleCmd {
    /// Scan for BLE keys (those advertising KeyBridge's APDU service) and list them with
    /// remembered keys out of range.
    Scan {
        /// How long to listen, in seconds.
        #[arg(long, default_value_t = SCAN_WINDOW.as_secs_f64())]
        seconds: f64,
    },
    /// Connect to a key, read its card and certificates, and remember it.
    Connect {
        /// The key's Bluetooth address (AA:BB:CC:DD:EE:FF), from `ble scan`.
        address: String,
        /// Reconnect it whenever it comes in range (desktop app and bridge).
        #[arg(long)]
        auto_reconnect: bool,
    },
    /// Disconnect a key and stop reconnecting it (it stays remembered).
    Disconnect {
        /// The key's Bluetooth address.
        address: String,
    },
    /// Forget a remembered key.
    Forget {
        /// The key's Bluetooth address.
        address: String,
    },
}

fn transport(app: &App) -> CliResult<Arc<BleTransport>> {
    let home = app.home()?;
    // The same transport and remembered-keys file as the desktop app and `serve`.
    kb_service::media::ble_transport(&home.paths)
        .ok_or_else(|| CliError::new(ErrorCode::BluetoothUnavailable, "BLE keys are supported on Linux only for now"))
}

fn available(t: &BleTransport) -> CliResult {
    match t.bluetooth_state() {
        BluetoothState::Available => Ok(()),
        BluetoothState::Unavailable { reason } => Err(CliError::new(ErrorCode::BluetoothUnavailable, reason)),
    }
}

/// `keybridge ble …`.
pub(crate) fn ble(app: &App, a: BleArgs) -> CliResult {
    let t = transport(app)?;
    let r = match a.cmd {
        BleCmd::Scan { seconds } => scan(app, &t, seconds),
        BleCmd::Connect { address, auto_reconnect } => connect(app, &t, &address, auto_reconnect),
        BleCmd::Disconnect { address } => {
            available(&t)?;
            t.disconnect_device(&address)?;
            done(app, "disconnected", &address)
        }
        BleCmd::Forget { address } => {
            t.forget(&address)?;
            done(app, "forgotten", &address)
        }
    };
    // Scans stop and links close explicitly (btleplug does not at exit).
    t.close();
    r
}

fn done(app: &App, what: &str, address: &str) -> CliResult {
    #[derive(Serialize)]
    struct Done<'a> {
        address: &'a str,
        result: &'a str,
    }
    let o = &app.out;
    o.show(&Done { address, result: what }, || {
        let zh = match what {
            "disconnected" => "已断开",
            _ => "已忘记",
        };
        format!("{address} {}", o.t(zh, what))
    });
    Ok(())
}

fn scan(app: &App, t: &BleTransport, seconds: f64) -> CliResult {
    available(t)?;
    let window = Duration::try_from_secs_f64(seconds.clamp(0.1, 60.0)).unwrap_or(SCAN_WINDOW);
    let keys = t.scan(window)?;
    #[derive(Serialize)]
    struct Listed<'a> {
        keys: &'a [BleKeyListing],
    }
    let o = &app.out;
    o.show(&Listed { keys: &keys }, || {
        if keys.is_empty() {
            return o.t("没有发现蓝牙Key。", "No BLE keys found.").to_string();
        }
        let mut s = String::new();
        for k in &keys {
            let ad = &k.advertisement;
            let state = match (k.in_range, k.online || ad.connected) {
                (false, _) => o.t("不在范围内", "out of range"),
                (true, true) => o.t("已连接", "connected"),
                (true, false) => o.t("未连接", "not connected"),
            };
            s.push_str(&format!(
                "{}  {}  {}  {}{}{}\n",
                ad.address,
                ad.name.as_deref().unwrap_or("-"),
                ad.rssi.map_or("-".to_string(), |r| format!("{r} dBm")),
                state,
                if ad.paired { o.t("，已配对", ", paired") } else { "" },
                if k.remembered { o.t("，已记住", ", remembered") } else { "" },
            ));
            if let Some(n) = &ad.needs {
                s.push_str(&format!("    {} {n}\n", o.t("KeyBridge 无法使用，需要：", "KeyBridge cannot use it; needs:")));
            }
        }
        s.trim_end().to_string()
    });
    Ok(())
}

fn connect(app: &App, t: &BleTransport, address: &str, auto_reconnect: bool) -> CliResult {
    available(t)?;
    // BlueZ knows a key only once a scan saw it.
    let seen = t.scan(SCAN_WINDOW)?;
    if !seen.iter().any(|k| k.in_range && k.advertisement.address.eq_ignore_ascii_case(address)) {
        return Err(CliError::new(ErrorCode::UnknownDevice, format!("no BLE key {address} in range")));
    }
    let info = t.connect(address)?;
    if auto_reconnect {
        t.set_auto_reconnect(address, true)?;
    }
    let containers = t.open_card(&info.id)?.containers()?;
    #[derive(Serialize)]
    struct Connected<'a> {
        address: &'a str,
        device: &'a DeviceInfo,
        containers: &'a [ContainerInfo],
        auto_reconnect: bool,
    }
    let o = &app.out;
    o.show(&Connected { address, device: &info, containers: &containers, auto_reconnect }, || {
        let certs = containers
            .iter()
            .flat_map(|c| [&c.sign, &c.encrypt])
            .filter(|s| s.as_ref().is_some_and(|s| s.certificate.is_some()))
            .count();
        format!(
            "{} {} ({})\n{}: {}  {}: {}\n{}",
            o.t("已连接", "Connected"),
            info.label,
            info.id,
            o.t("容器", "containers"),
            containers.len(),
            o.t("证书", "certificates"),
            certs,
            o.t("已记住该蓝牙Key；命令结束时断开连接。", "The key is remembered; the link closes when this command ends."),
        )
    });
    Ok(())
}
