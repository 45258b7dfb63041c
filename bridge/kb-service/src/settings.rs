//! Settings: one TOML file per user, and where KeyBridge keeps its files.
//!
//! ```toml
//! pin_cache_minutes = 30          # "off", 1, 5, 10, 30 or 60
//! pin_cache_shared = false        # true: a remembered PIN serves every client
//! near_expiry_warning_days = 90   # 临期 warning
//! logs_enabled = true
//! log_retention_days = 30
//! update_check = "weekly"         # "never", "daily" or "weekly"
//! update_url = ""
//! bridge_port = 17210
//! language = "zh-CN"              # or "en"
//! file_key_dir = "/home/me/.local/share/keybridge/keys"   # optional
//! pkcs11_modules = ["/usr/lib/softhsm/libsofthsm2.so"]    # optional, absolute paths
//! skf_modules = ["/opt/vendor/libskf.so"]                 # optional, GM/T 0016 SKF modules
//! bridge_consent = "prompt"        # or "grants-only": web origins without a grant are refused, never asked
//! phone_listen = ["192.168.1.20:17211"]   # optional: the phone link's direct (LAN) listener
//! phone_relay_url = "wss://relay.example.cn" # optional: the phone link's relay (NATS WebSocket)
//! ca_url = "https://ca.example.cn"  # optional: the CA renewal talks to (docs/ca-api.md); empty: none configured
//! revocation_check = "online"        # online (default) | offline (CRL folder and cache only) | off
//! ocsp_responder = "http://ocsp.example.cn" # optional: ask this OCSP responder instead of the certificates' own
//! crl_dir = "/srv/crl"               # optional: CRLs (DER or PEM) to use; default <data dir>/crl
//! autostart = false               # start the desktop app in the tray at login
//! ```
//!
//! Loading is strict: an unknown key (a typo) or a value out of range is a
//! [`ServiceError::Config`] naming the key and its line, never silently replaced by a
//! default. A missing file means all defaults. Saving is atomic (temp file, fsync,
//! rename), so a crash never leaves a half-written file.
//!
//! [`default_paths`] gives the config, data and log directories under the user's
//! directories, or all under one directory when `KEYBRIDGE_HOME` is set.

use crate::{Result, ServiceError};
use kb_types::Lang;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Environment variable that puts every KeyBridge file under one directory
/// (`config/`, `data/`, `logs/`). Used by tests and portable installs.
pub const HOME_ENV: &str = "KEYBRIDGE_HOME";
/// The settings file's name inside the config directory.
pub const SETTINGS_FILE_NAME: &str = "settings.toml";
/// The audit store's name inside the data directory.
pub const AUDIT_DB_NAME: &str = "audit.sqlite3";
/// Default local bridge port (loopback only; used by the bridge when it lands).
pub const DEFAULT_BRIDGE_PORT: u16 = 17210;

/// How long a verified PIN stays cached: off, 1, 5, 10, 30 or 60 minutes (default 30).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PinCacheMinutes {
    /// Never cache; every operation asks.
    Off,
    /// 1 minute.
    One,
    /// 5 minutes.
    Five,
    /// 10 minutes.
    Ten,
    /// 30 minutes (default).
    #[default]
    Thirty,
    /// 60 minutes.
    Sixty,
}

impl PinCacheMinutes {
    /// Every choice, in the order a menu shows them.
    pub const ALL: [PinCacheMinutes; 6] = [Self::Off, Self::One, Self::Five, Self::Ten, Self::Thirty, Self::Sixty];

    /// Minutes (0 = off).
    pub const fn minutes(self) -> u32 {
        match self {
            Self::Off => 0,
            Self::One => 1,
            Self::Five => 5,
            Self::Ten => 10,
            Self::Thirty => 30,
            Self::Sixty => 60,
        }
    }

    /// From minutes (0 = off); `None` for anything not offered.
    pub fn from_minutes(m: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.minutes() == m)
    }

    /// How long a PIN is kept, `None` when caching is off.
    pub fn duration(self) -> Option<Duration> {
        match self {
            Self::Off => None,
            other => Some(Duration::from_secs(u64::from(other.minutes()) * 60)),
        }
    }
}

impl Serialize for PinCacheMinutes {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Self::Off => s.serialize_str("off"),
            other => s.serialize_u32(other.minutes()),
        }
    }
}

/// How often to look for a new version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UpdateCheck {
    /// Never.
    Never,
    /// Once a day.
    Daily,
    /// Once a week (default).
    #[default]
    Weekly,
}

impl UpdateCheck {
    /// Stable lower-case name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Never => "never",
            Self::Daily => "daily",
            Self::Weekly => "weekly",
        }
    }
}

/// Whether and how certificates' revocation status is checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RevocationCheck {
    /// CRLs in the CRL folder and carried in signatures, the cache, and the
    /// certificates' own CRL distribution points and OCSP responders (default).
    #[default]
    Online,
    /// Only the CRL folder, CRLs carried in signatures and what is cached: nothing is
    /// fetched. Without such data the status is "unknown (offline)", never "good".
    Offline,
    /// Not checked at all: every status is "unknown (not checked)".
    Off,
}

impl RevocationCheck {
    /// Stable lower-case name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Offline => "offline",
            Self::Off => "off",
        }
    }
}

/// The bridge's consent policy for web origins without a grant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum BridgeConsent {
    /// Ask the user (desktop dialog; terminal when headless).
    #[default]
    #[serde(rename = "prompt")]
    Prompt,
    /// Never ask: only origins granted beforehand.
    #[serde(rename = "grants-only")]
    GrantsOnly,
}

/// The user's settings. Build one with [`Settings::default`] and change fields, or
/// [`Settings::set`] by key name; [`Settings::save`] validates before writing.
///
/// Deserializing (from TOML or from the desktop's JSON) goes through the same checks as
/// [`Settings::load`]: unknown keys and out-of-range values are errors naming the key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Settings {
    /// PIN cache time.
    pub pin_cache_minutes: PinCacheMinutes,
    /// A remembered PIN serves every client (the user's bid tool, the desktop, granted
    /// web sites) instead of only the client that typed it; default false. An
    /// administrator's choice for machines that run one trusted tool.
    pub pin_cache_shared: bool,
    /// Warn this many days before a certificate expires (临期), 1–3650; default 90.
    pub near_expiry_warning_days: u32,
    /// Write log files; default true.
    pub logs_enabled: bool,
    /// Keep log files this many days, 1–3650; default 30.
    pub log_retention_days: u32,
    /// Update check frequency; default weekly.
    pub update_check: UpdateCheck,
    /// Where to check for updates: empty (none configured), an `https://` URL, or an
    /// `http://` URL on loopback (the local dev server).
    pub update_url: String,
    /// Local bridge port, 1024–65535; default 17210.
    pub bridge_port: u16,
    /// What the bridge does with a web origin that has no grant: `prompt` (ask the
    /// user, default) or `grants-only` (refuse; for headless servers).
    pub bridge_consent: BridgeConsent,
    /// UI language; default zh-CN.
    pub language: Lang,
    /// Where file-type keys live; `None` = `<data dir>/keys` ([`Settings::file_key_dir`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_key_dir: Option<PathBuf>,
    /// PKCS#11 modules (vendor libraries) whose tokens are listed as media; absolute
    /// paths, no duplicates; default none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pkcs11_modules: Vec<PathBuf>,
    /// SKF (GM/T 0016) modules (vendor libraries) whose keys are listed as media; absolute
    /// paths, no duplicates; default none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skf_modules: Vec<PathBuf>,
    /// The phone link's direct listener: `ip:port` addresses phones reach on the LAN
    /// (fixed ports: paired phones come back to the addresses their QR named). Open only
    /// while pairing or while a paired phone is expected; default none (no direct link).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub phone_listen: Vec<std::net::SocketAddr>,
    /// The phone link's relay: a `ws://` or `wss://` NATS WebSocket URL both the PC and the
    /// phones reach; empty (default): no relay.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub phone_relay_url: String,
    /// The CA that certificate renewal talks to (docs/ca-api.md): an `https://` URL, or an
    /// `http://` URL on loopback; empty (default): none configured — the CLI then uses the
    /// local dev CA and the desktop app runs one in-process.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ca_url: String,
    /// Revocation checking: online (default), offline or off.
    pub revocation_check: RevocationCheck,
    /// An OCSP responder asked instead of the ones certificates name (`http://` or
    /// `https://`; OCSP answers are signed); empty (default): the certificates' own.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ocsp_responder: String,
    /// Where CRLs to use are kept; `None` = `<data dir>/crl` ([`Settings::crl_dir`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crl_dir: Option<PathBuf>,
    /// Start the desktop app (in the tray) at login; default false. The desktop app keeps
    /// its login entry (XDG autostart on Linux) in step when the setting is saved.
    pub autostart: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            pin_cache_minutes: PinCacheMinutes::default(),
            pin_cache_shared: false,
            near_expiry_warning_days: 90,
            logs_enabled: true,
            log_retention_days: 30,
            update_check: UpdateCheck::default(),
            update_url: String::new(),
            bridge_port: DEFAULT_BRIDGE_PORT,
            bridge_consent: BridgeConsent::default(),
            language: Lang::ZhCn,
            file_key_dir: None,
            pkcs11_modules: Vec::new(),
            skf_modules: Vec::new(),
            phone_listen: Vec::new(),
            phone_relay_url: String::new(),
            ca_url: String::new(),
            revocation_check: RevocationCheck::default(),
            ocsp_responder: String::new(),
            crl_dir: None,
            autostart: false,
        }
    }
}

fn expect_bool(v: &toml::Value) -> std::result::Result<bool, String> {
    match v {
        toml::Value::Boolean(b) => Ok(*b),
        other => Err(format!("must be true or false (got {})", describe(other))),
    }
}

fn expect_int(v: &toml::Value, lo: i64, hi: i64) -> std::result::Result<i64, String> {
    match v {
        toml::Value::Integer(n) if (lo..=hi).contains(n) => Ok(*n),
        toml::Value::Integer(n) => Err(format!("must be between {lo} and {hi} (got {n})")),
        other => Err(format!("must be a whole number between {lo} and {hi} (got {})", describe(other))),
    }
}

fn expect_str(v: &toml::Value) -> std::result::Result<&str, String> {
    match v {
        toml::Value::String(s) => Ok(s),
        other => Err(format!("must be a quoted string (got {})", describe(other))),
    }
}

fn describe(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("\"{s}\""),
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(_) => "an array".into(),
        toml::Value::Table(_) => "a table".into(),
    }
}

fn is_loopback_http(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else { return false };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    ["127.0.0.1", "localhost", "[::1]"].iter().any(|h| match authority.strip_prefix(h) {
        Some("") => true,
        Some(p) => p.strip_prefix(':').is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit())),
        None => false,
    })
}

/// A server URL: empty (none), `https://…`, or `http://` on loopback (a local dev server).
fn https_or_loopback(v: &toml::Value) -> std::result::Result<String, String> {
    let url = expect_str(v)?.trim();
    let ok = url.is_empty()
        || (url.len() > "https://".len() && url.starts_with("https://") && !url.contains(char::is_whitespace))
        || is_loopback_http(url);
    if !ok {
        return Err(format!("must be empty or an https:// URL (http:// only on 127.0.0.1/localhost) (got \"{url}\")"));
    }
    Ok(url.to_string())
}

/// An optional directory: empty = not set (the default), else an absolute path.
fn optional_dir(v: &toml::Value) -> std::result::Result<Option<PathBuf>, String> {
    let s = expect_str(v)?;
    if s.is_empty() {
        return Ok(None);
    }
    let p = PathBuf::from(s);
    if !p.is_absolute() {
        return Err(format!("must be an absolute path (got \"{s}\")"));
    }
    Ok(Some(p))
}

/// A list of driver module paths: absolute, no duplicates.
fn module_paths(v: &toml::Value) -> std::result::Result<Vec<PathBuf>, String> {
    let toml::Value::Array(items) = v else {
        return Err(format!("must be an array of absolute paths (got {})", describe(v)));
    };
    let mut modules: Vec<PathBuf> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = PathBuf::from(expect_str(item).map_err(|e| format!("entry {}: {e}", i + 1))?);
        if !p.is_absolute() {
            return Err(format!("entry {}: must be an absolute path (got \"{}\")", i + 1, p.display()));
        }
        if modules.contains(&p) {
            return Err(format!("entry {}: \"{}\" is listed twice", i + 1, p.display()));
        }
        modules.push(p);
    }
    Ok(modules)
}

/// A list of `ip:port` socket addresses, no duplicates.
fn socket_addrs(v: &toml::Value) -> std::result::Result<Vec<std::net::SocketAddr>, String> {
    let toml::Value::Array(items) = v else {
        return Err(format!("must be an array of \"ip:port\" addresses (got {})", describe(v)));
    };
    let mut addrs = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let s = expect_str(item).map_err(|e| format!("entry {}: {e}", i + 1))?;
        let a: std::net::SocketAddr =
            s.parse().map_err(|_| format!("entry {}: must be \"ip:port\", e.g. \"192.168.1.20:17211\" (got \"{s}\")", i + 1))?;
        if addrs.contains(&a) {
            return Err(format!("entry {}: \"{s}\" is listed twice", i + 1));
        }
        addrs.push(a);
    }
    Ok(addrs)
}

impl Settings {
    /// Every key the file may contain, in file order.
    pub const KEYS: &'static [&'static str] = &[
        "pin_cache_minutes",
        "pin_cache_shared",
        "near_expiry_warning_days",
        "logs_enabled",
        "log_retention_days",
        "update_check",
        "update_url",
        "bridge_port",
        "bridge_consent",
        "language",
        "file_key_dir",
        "pkcs11_modules",
        "skf_modules",
        "phone_listen",
        "phone_relay_url",
        "ca_url",
        "revocation_check",
        "ocsp_responder",
        "crl_dir",
        "autostart",
    ];

    /// Set one key from a TOML value. The error text does not name the key; callers add it.
    fn apply(&mut self, key: &str, v: &toml::Value) -> std::result::Result<(), String> {
        match key {
            "pin_cache_minutes" => {
                self.pin_cache_minutes = match v {
                    toml::Value::String(s) if s.eq_ignore_ascii_case("off") => PinCacheMinutes::Off,
                    toml::Value::Integer(n) => u32::try_from(*n)
                        .ok()
                        .and_then(PinCacheMinutes::from_minutes)
                        .ok_or_else(|| format!("must be \"off\" or one of 1, 5, 10, 30, 60 minutes (got {n})"))?,
                    other => return Err(format!("must be \"off\" or one of 1, 5, 10, 30, 60 minutes (got {})", describe(other))),
                }
            }
            "near_expiry_warning_days" => self.near_expiry_warning_days = expect_int(v, 1, 3650)? as u32,
            "log_retention_days" => self.log_retention_days = expect_int(v, 1, 3650)? as u32,
            "bridge_port" => self.bridge_port = expect_int(v, 1024, 65535)? as u16,
            "logs_enabled" => self.logs_enabled = expect_bool(v)?,
            "pin_cache_shared" => self.pin_cache_shared = expect_bool(v)?,
            "autostart" => self.autostart = expect_bool(v)?,
            "update_check" => {
                self.update_check = match expect_str(v)? {
                    "never" => UpdateCheck::Never,
                    "daily" => UpdateCheck::Daily,
                    "weekly" => UpdateCheck::Weekly,
                    other => return Err(format!("must be \"never\", \"daily\" or \"weekly\" (got \"{other}\")")),
                }
            }
            "update_url" => self.update_url = https_or_loopback(v)?,
            "bridge_consent" => {
                self.bridge_consent = match expect_str(v)? {
                    "prompt" => BridgeConsent::Prompt,
                    "grants-only" => BridgeConsent::GrantsOnly,
                    other => return Err(format!("must be \"prompt\" or \"grants-only\" (got \"{other}\")")),
                }
            }
            "language" => {
                self.language = match expect_str(v)? {
                    "zh-CN" => Lang::ZhCn,
                    "en" => Lang::En,
                    other => return Err(format!("must be \"zh-CN\" or \"en\" (got \"{other}\")")),
                }
            }
            "file_key_dir" => self.file_key_dir = optional_dir(v)?,
            "pkcs11_modules" => self.pkcs11_modules = module_paths(v)?,
            "skf_modules" => self.skf_modules = module_paths(v)?,
            "phone_listen" => self.phone_listen = socket_addrs(v)?,
            "phone_relay_url" => {
                let url = expect_str(v)?.trim();
                let ok = url.is_empty()
                    || ((url.starts_with("ws://") || url.starts_with("wss://"))
                        && url.len() <= 200
                        && url.split("://").nth(1).is_some_and(|h| !h.is_empty())
                        && url.bytes().all(|b| b.is_ascii_graphic()));
                if !ok {
                    return Err(format!("must be empty or a ws:// or wss:// URL of at most 200 characters (got \"{url}\")"));
                }
                self.phone_relay_url = url.to_string();
            }
            "ca_url" => self.ca_url = https_or_loopback(v)?,
            "revocation_check" => {
                self.revocation_check = match expect_str(v)? {
                    "online" => RevocationCheck::Online,
                    "offline" => RevocationCheck::Offline,
                    "off" => RevocationCheck::Off,
                    other => return Err(format!("must be online, offline or off (got \"{other}\")")),
                }
            }
            "ocsp_responder" => {
                let url = expect_str(v)?.trim();
                if !url.is_empty() && (kb_ca::http::parse_http_url(url).is_none() || url.contains(char::is_whitespace)) {
                    return Err(format!("must be empty or an http:// or https:// URL (got \"{url}\")"));
                }
                self.ocsp_responder = url.to_string();
            }
            "crl_dir" => self.crl_dir = optional_dir(v)?,
            _ => return Err("unknown key".into()),
        }
        Ok(())
    }

    /// Build from key → (value, line) pairs, checking every key.
    fn from_entries(entries: Vec<(String, toml::Value, Option<usize>)>) -> Result<Self> {
        let at = |line: Option<usize>| line.map(|l| format!(" (line {l})")).unwrap_or_default();
        let unknown: Vec<String> = entries
            .iter()
            .filter(|(k, _, _)| !Self::KEYS.contains(&k.as_str()))
            .map(|(k, _, l)| format!("`{k}`{}", at(*l)))
            .collect();
        if !unknown.is_empty() {
            return Err(ServiceError::Config(format!(
                "unknown key{} {}; the known keys are {}",
                if unknown.len() > 1 { "s" } else { "" },
                unknown.join(", "),
                Self::KEYS.join(", ")
            )));
        }
        let mut s = Settings::default();
        for (k, v, line) in &entries {
            s.apply(k, v).map_err(|e| ServiceError::Config(format!("`{k}`{}: {e}", at(*line))))?;
        }
        Ok(s)
    }

    /// Parse settings text (TOML). Keys not present keep their defaults.
    pub fn parse(text: &str) -> Result<Self> {
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let map: BTreeMap<String, toml::Spanned<toml::Value>> = toml::from_str(text).map_err(|e| {
            let msg = e.message().trim();
            match e.span() {
                Some(s) => {
                    let n = line_of(s.start);
                    let src = text.lines().nth(n - 1).unwrap_or("").trim();
                    ServiceError::Config(format!("line {n}: {msg}: `{src}`"))
                }
                None => ServiceError::Config(msg.to_string()),
            }
        })?;
        let mut entries: Vec<_> = map
            .into_iter()
            .map(|(k, v)| {
                let line = line_of(v.span().start);
                (k, v.into_inner(), Some(line))
            })
            .collect();
        entries.sort_by_key(|(_, _, l)| *l);
        Self::from_entries(entries)
    }

    /// Load from `path`. A missing file gives the defaults; an unreadable, malformed or
    /// invalid one is an error (with the file, line and key).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(ServiceError::Config(format!("{}: not UTF-8 text", path.display())));
            }
            Err(e) => return Err(ServiceError::Io(format!("{}: {e}", path.display()))),
        };
        Self::parse(&text).map_err(|e| match e {
            ServiceError::Config(m) => ServiceError::Config(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Check every field (what [`Settings::save`] does first).
    pub fn validate(&self) -> Result<()> {
        Self::from_entries(self.entries()?).map(|_| ())
    }

    fn entries(&self) -> Result<Vec<(String, toml::Value, Option<usize>)>> {
        let table = toml::Table::try_from(self).map_err(|e| ServiceError::Config(e.to_string()))?;
        Ok(table.into_iter().map(|(k, v)| (k, v, None)).collect())
    }

    /// The settings as TOML text, with a comment header.
    pub fn to_toml(&self) -> Result<String> {
        let body = toml::to_string(self).map_err(|e| ServiceError::Config(e.to_string()))?;
        Ok(format!(
            "# KeyBridge settings. Unknown keys are rejected; delete a line to get its default.\n\
             # pin_cache_minutes: \"off\", 1, 5, 10, 30, 60 · update_check: \"never\", \"daily\", \"weekly\"\n\
             # language: \"zh-CN\", \"en\"\n\n{body}"
        ))
    }

    /// Validate, then write atomically: a temp file in the same directory, fsync,
    /// rename over `path`, fsync the directory. Creates the directory if needed.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        self.validate()?;
        let text = self.to_toml()?;
        let path = path.as_ref();
        write_atomic(path, text.as_bytes()).map_err(|e| ServiceError::Io(format!("{}: {e}", path.display())))
    }

    /// Set one key from text as typed on a command line (`5`, `off`, `true`, `en`,
    /// `https://…`), with the same checks as the file.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        if !Self::KEYS.contains(&key) {
            return Err(ServiceError::Config(format!("unknown key `{key}`; the known keys are {}", Self::KEYS.join(", "))));
        }
        let v = match toml::from_str::<toml::Table>(&format!("v = {value}")) {
            Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(value.to_string())),
            Err(_) => toml::Value::String(value.to_string()),
        };
        // Bare strings like `weekly` or `off` do not parse as TOML; quoted ones do.
        let mut next = self.clone();
        next.apply(key, &v).map_err(|e| ServiceError::Config(format!("`{key}`: {e}")))?;
        *self = next;
        Ok(())
    }

    /// One key's value as text (strings unquoted), `None` for an unknown key or an
    /// unset optional one.
    pub fn get(&self, key: &str) -> Option<String> {
        let table = toml::Table::try_from(self).ok()?;
        match table.get(key)? {
            toml::Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }

    /// The CRL folder: the configured one, or `<data dir>/crl`.
    pub fn crl_dir(&self, paths: &Paths) -> PathBuf {
        self.crl_dir.clone().unwrap_or_else(|| paths.data_dir.join("crl"))
    }

    /// The file-key directory: the configured one, or `<data dir>/keys`.
    pub fn file_key_dir(&self, paths: &Paths) -> PathBuf {
        self.file_key_dir.clone().unwrap_or_else(|| paths.default_file_key_dir())
    }
}

impl<'de> Deserialize<'de> for Settings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let map = BTreeMap::<String, toml::Value>::deserialize(d)?;
        Settings::from_entries(map.into_iter().map(|(k, v)| (k, v, None)).collect()).map_err(serde::de::Error::custom)
    }
}

/// Where KeyBridge keeps its files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Paths {
    /// Settings (`settings.toml`).
    pub config_dir: PathBuf,
    /// Audit store, file-type keys, bridge grants.
    pub data_dir: PathBuf,
    /// Daily log files.
    pub log_dir: PathBuf,
}

impl Paths {
    /// Everything under one directory: `<root>/config`, `<root>/data`, `<root>/logs`.
    pub fn under(root: impl AsRef<Path>) -> Self {
        let root = root.as_ref();
        Self { config_dir: root.join("config"), data_dir: root.join("data"), log_dir: root.join("logs") }
    }

    /// `<config>/settings.toml`.
    pub fn settings_file(&self) -> PathBuf {
        self.config_dir.join(SETTINGS_FILE_NAME)
    }

    /// `<data>/audit.sqlite3`.
    pub fn audit_db(&self) -> PathBuf {
        self.data_dir.join(AUDIT_DB_NAME)
    }

    /// `<data>/keys`, the default file-key directory.
    pub fn default_file_key_dir(&self) -> PathBuf {
        self.data_dir.join("keys")
    }

    /// Create the three directories (owner-only on Unix: they hold keys and logs).
    pub fn create_all(&self) -> Result<()> {
        for d in [&self.config_dir, &self.data_dir, &self.log_dir] {
            create_private_dir(d)?;
        }
        Ok(())
    }
}

/// Write a small file atomically: a temp file beside it (owner-only, as `tempfile`
/// creates them), synced, renamed over `path`, the directory synced. Creates the
/// directory. A crash leaves the old file or the new one, never a mix. Used for the
/// settings, the bridge's grants and its client secret.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut tmp = tempfile::Builder::new().prefix(&format!(".{name}.")).suffix(".tmp").tempfile_in(&dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    #[cfg(unix)]
    std::fs::File::open(&dir)?.sync_all()?;
    Ok(())
}

pub(crate) fn create_private_dir(d: &Path) -> Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(d).map_err(|e| ServiceError::Io(format!("{}: {e}", d.display())))
}

/// The directories to use: all under `$KEYBRIDGE_HOME` when it is set and not empty,
/// otherwise the platform's per-user directories for `cn.KeyBridge.KeyBridge`
/// (on Linux `~/.config/keybridge`, `~/.local/share/keybridge`,
/// `~/.local/state/keybridge/logs`). Nothing is created.
pub fn default_paths() -> Result<Paths> {
    paths_for(std::env::var_os(HOME_ENV).filter(|v| !v.is_empty()).map(PathBuf::from))
}

/// [`default_paths`] with the `KEYBRIDGE_HOME` value given explicitly (`None` = unset).
pub fn paths_for(home: Option<PathBuf>) -> Result<Paths> {
    if let Some(home) = home {
        let home = if home.is_absolute() { home } else { std::env::current_dir()?.join(home) };
        return Ok(Paths::under(home));
    }
    let dirs = directories::ProjectDirs::from("cn", "KeyBridge", "KeyBridge").ok_or_else(|| {
        ServiceError::Config(format!("no home directory found; set {HOME_ENV} to choose where KeyBridge keeps its files"))
    })?;
    let log_dir = match dirs.state_dir() {
        Some(s) => s.join("logs"),
        None => dirs.data_local_dir().join("logs"),
    };
    Ok(Paths { config_dir: dirs.config_dir().to_path_buf(), data_dir: dirs.data_dir().to_path_buf(), log_dir })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autostart_is_off_by_default_and_round_trips() {
        assert!(!Settings::default().autostart);
        let s = Settings::parse("autostart = true\n").unwrap();
        assert!(s.autostart);
        assert_eq!(Settings::parse(&s.to_toml().unwrap()).unwrap(), s);
        let e = Settings::parse("autostart = \"yes\"").unwrap_err().to_string();
        assert!(e.contains("`autostart`") && e.contains("true or false"), "{e}");
    }

    #[test]
    fn bridge_consent() {
        assert_eq!(Settings::default().bridge_consent, BridgeConsent::Prompt);
        let s = Settings::parse("bridge_consent = \"grants-only\"\n").unwrap();
        assert_eq!(s.bridge_consent, BridgeConsent::GrantsOnly);
        assert_eq!(Settings::parse(&s.to_toml().unwrap()).unwrap(), s);
        let e = Settings::parse("bridge_consent = \"always\"").unwrap_err().to_string();
        assert!(e.contains("bridge_consent") && e.contains("grants-only"), "{e}");
    }

    #[test]
    fn phone_link_settings() {
        let d = Settings::default();
        assert!(d.phone_listen.is_empty() && d.phone_relay_url.is_empty(), "no phone transport by default");
        let s = Settings::parse(
            "phone_listen = [\"127.0.0.1:17211\", \"[::1]:17211\"]\nphone_relay_url = \"wss://relay.example.cn:8443\"\n",
        )
        .unwrap();
        assert_eq!(s.phone_listen.len(), 2);
        assert_eq!(s.phone_relay_url, "wss://relay.example.cn:8443");
        assert_eq!(Settings::parse(&s.to_toml().unwrap()).unwrap(), s);
        for (text, why) in [
            ("phone_listen = [\"127.0.0.1\"]", "ip:port"),
            ("phone_listen = [\"127.0.0.1:1\", \"127.0.0.1:1\"]", "twice"),
            ("phone_listen = \"127.0.0.1:1\"", "array"),
            ("phone_relay_url = \"nats://relay:4222\"", "ws://"),
            ("phone_relay_url = \"ws://\"", "ws://"),
        ] {
            let e = Settings::parse(text).unwrap_err().to_string();
            assert!(e.contains("phone_") && e.contains(why), "{text}: {e}");
        }
    }

    #[test]
    fn pkcs11_modules() {
        let s = Settings::parse("pkcs11_modules = [\"/usr/lib/a.so\", \"/opt/b/c.so\"]\n").unwrap();
        assert_eq!(s.pkcs11_modules, [PathBuf::from("/usr/lib/a.so"), PathBuf::from("/opt/b/c.so")]);
        assert_eq!(Settings::parse(&s.to_toml().unwrap()).unwrap(), s);
        assert!(Settings::parse("pkcs11_modules = []").unwrap().pkcs11_modules.is_empty());
        assert!(!Settings::default().to_toml().unwrap().contains("pkcs11_modules"));
        for (bad, says) in [
            ("pkcs11_modules = \"/usr/lib/a.so\"", "must be an array of absolute paths (got \"/usr/lib/a.so\")"),
            ("pkcs11_modules = [\"lib/a.so\"]", "entry 1: must be an absolute path (got \"lib/a.so\")"),
            ("pkcs11_modules = [\"/a.so\", 3]", "entry 2: must be a quoted string (got 3)"),
            ("pkcs11_modules = [\"/a.so\", \"/a.so\"]", "entry 2: \"/a.so\" is listed twice"),
        ] {
            let e = Settings::parse(bad).unwrap_err().to_string();
            assert!(e.contains("`pkcs11_modules` (line 1)") && e.contains(says), "{bad}: {e}");
        }
        let mut s = Settings::default();
        let skf = Settings::parse("skf_modules = [\"/opt/v/libskf.so\"]\n").unwrap();
        assert_eq!(skf.skf_modules, [PathBuf::from("/opt/v/libskf.so")]);
        assert!(skf.pkcs11_modules.is_empty() && !Settings::default().to_toml().unwrap().contains("skf_modules"));
        let e = Settings::parse("skf_modules = [\"rel.so\"]").unwrap_err().to_string();
        assert!(e.contains("`skf_modules` (line 1)") && e.contains("must be an absolute path"), "{e}");
        s.set("pkcs11_modules", "[\"/x/y.so\"]").unwrap();
        assert_eq!(s.pkcs11_modules, [PathBuf::from("/x/y.so")]);
        assert!(s.set("pkcs11_modules", "[\"y.so\"]").is_err());
    }

    #[test]
    fn revocation_settings() {
        let d = Settings::default();
        assert_eq!(d.revocation_check, RevocationCheck::Online);
        assert!(d.ocsp_responder.is_empty() && d.crl_dir.is_none());
        let s = Settings::parse(
            "revocation_check = \"offline\"\nocsp_responder = \"http://ocsp.example.cn/\"\ncrl_dir = \"/srv/crl\"\n",
        )
        .unwrap();
        assert_eq!(s.revocation_check, RevocationCheck::Offline);
        assert_eq!(s.ocsp_responder, "http://ocsp.example.cn/");
        assert_eq!(s.crl_dir, Some(PathBuf::from("/srv/crl")));
        assert_eq!(Settings::parse(&s.to_toml().unwrap()).unwrap(), s);
        let paths = Paths::under(std::path::Path::new("/h"));
        assert_eq!(d.crl_dir(&paths), PathBuf::from("/h/data/crl"));
        for (bad, says) in [
            ("revocation_check = \"sometimes\"", "online, offline or off"),
            ("ocsp_responder = \"ftp://x\"", "http:// or https://"),
            ("crl_dir = \"relative/crl\"", "absolute"),
        ] {
            let e = Settings::parse(bad).unwrap_err().to_string();
            assert!(e.contains(says) && e.contains(bad.split(' ').next().unwrap()), "{bad}: {e}");
        }
    }

    #[test]
    fn ca_url() {
        let d = Settings::default();
        assert!(d.ca_url.is_empty() && !d.to_toml().unwrap().contains("ca_url"), "no CA configured by default");
        let s = Settings::parse("ca_url = \"https://ca.example.cn/prefix\"\n").unwrap();
        assert_eq!(s.ca_url, "https://ca.example.cn/prefix");
        assert_eq!(Settings::parse(&s.to_toml().unwrap()).unwrap(), s);
        assert_eq!(Settings::parse("ca_url = \"http://127.0.0.1:8443\"").unwrap().ca_url, "http://127.0.0.1:8443");
        for bad in ["ca_url = \"http://ca.example.cn\"", "ca_url = \"ftp://x\"", "ca_url = 3"] {
            let e = Settings::parse(bad).unwrap_err().to_string();
            assert!(e.contains("`ca_url` (line 1)"), "{bad}: {e}");
        }
        let mut m = Settings::default();
        m.set("ca_url", "https://ca.example.cn").unwrap();
        assert_eq!(m.get("ca_url").as_deref(), Some("https://ca.example.cn"));
        assert!(m.set("ca_url", "http://10.0.0.1").is_err());
    }

    #[test]
    fn loopback_urls() {
        for ok in ["http://127.0.0.1:8080/x", "http://localhost/", "http://localhost", "http://[::1]:9/"] {
            assert!(is_loopback_http(ok), "{ok}");
        }
        for bad in ["http://example.com", "http://127.0.0.1.evil.com/", "http://localhost.evil:80", "https://x"] {
            assert!(!is_loopback_http(bad), "{bad}");
        }
    }
}
