//! Settings (TOML, strict, atomic save, KEYBRIDGE_HOME) and logs (daily files, PIN
//! redaction, encrypted export for support).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kb_crypto::PrivateKey;
use kb_pki::Certificate;
use kb_pki::LocalSigner;
use kb_pki::cms::LocalDecrypter;
use kb_pki::cms::envelope;
use kb_pki::issue::{CertificateParams, self_signed};
use kb_pki::time::UnixTime;
use kb_service::logs::{self, LogConfig};
use kb_service::settings::{self, Paths, PinCacheMinutes, Settings, UpdateCheck};
use kb_types::{Algorithm, ErrorCode, HasErrorCode, KeyUsage, Lang, Pin};
use std::io::Read;
use std::path::Path;

// ------------------------------------------------------------------ settings

#[test]
fn defaults() {
    let s = Settings::default();
    assert_eq!(s.pin_cache_minutes, PinCacheMinutes::Thirty);
    assert_eq!(s.pin_cache_minutes.duration(), Some(std::time::Duration::from_secs(1800)));
    assert!(!s.pin_cache_shared, "a remembered PIN serves only its client unless an administrator widens it");
    assert_eq!(s.near_expiry_warning_days, 90);
    assert!(s.logs_enabled);
    assert_eq!(s.log_retention_days, 30);
    assert_eq!(s.update_check, UpdateCheck::Weekly);
    assert_eq!(s.update_url, "");
    assert_eq!(s.bridge_port, 17210);
    assert_eq!(s.language, Lang::ZhCn);
    assert_eq!(s.file_key_dir, None);
    let paths = Paths::under("/kbhome");
    assert_eq!(s.file_key_dir(&paths), Path::new("/kbhome/data/keys"));
    assert_eq!(paths.settings_file(), Path::new("/kbhome/config/settings.toml"));
    assert_eq!(paths.log_dir, Path::new("/kbhome/logs"));

    let dir = tempfile::tempdir().unwrap();
    assert_eq!(Settings::load(dir.path().join("missing.toml")).unwrap(), s, "missing file = defaults");
    assert_eq!(Settings::parse("").unwrap(), s);
    assert_eq!(Settings::parse("# only a comment\n").unwrap(), s);
    assert_eq!(PinCacheMinutes::Off.duration(), None);
}

#[test]
fn every_valid_value_parses() {
    let s = Settings::parse(
        "pin_cache_minutes = \"off\"\npin_cache_shared = true\nnear_expiry_warning_days = 30\nlogs_enabled = false\nlog_retention_days = 7\n\
         update_check = \"daily\"\nupdate_url = \"https://update.example.cn/keybridge\"\nbridge_port = 20000\n\
         language = \"en\"\nfile_key_dir = \"/srv/keys\"\n",
    )
    .unwrap();
    assert_eq!(s.pin_cache_minutes, PinCacheMinutes::Off);
    assert!(s.pin_cache_shared);
    assert_eq!(s.near_expiry_warning_days, 30);
    assert!(!s.logs_enabled);
    assert_eq!(s.log_retention_days, 7);
    assert_eq!(s.update_check, UpdateCheck::Daily);
    assert_eq!(s.update_url, "https://update.example.cn/keybridge");
    assert_eq!(s.bridge_port, 20000);
    assert_eq!(s.language, Lang::En);
    assert_eq!(s.file_key_dir.as_deref(), Some(Path::new("/srv/keys")));
    for m in [0, 1, 5, 10, 30, 60] {
        let s = Settings::parse(&format!("pin_cache_minutes = {m}")).unwrap();
        assert_eq!(s.pin_cache_minutes.minutes(), m);
    }
    for u in ["never", "daily", "weekly"] {
        assert_eq!(Settings::parse(&format!("update_check = \"{u}\"")).unwrap().update_check.name(), u);
    }
    assert!(Settings::parse("update_url = \"http://127.0.0.1:8443/update\"").is_ok(), "local dev server");
}

#[test]
fn every_invalid_value_is_config_invalid_naming_the_key() {
    let cases: &[(&str, &str)] = &[
        ("pin_cache_minutes", "7"),
        ("pin_cache_minutes", "-1"),
        ("pin_cache_minutes", "\"30\""),
        ("pin_cache_minutes", "\"never\""),
        ("pin_cache_minutes", "30.0"),
        ("pin_cache_minutes", "true"),
        ("near_expiry_warning_days", "0"),
        ("near_expiry_warning_days", "-5"),
        ("near_expiry_warning_days", "100000"),
        ("near_expiry_warning_days", "\"90\""),
        ("logs_enabled", "\"yes\""),
        ("pin_cache_shared", "\"yes\""),
        ("pin_cache_shared", "1"),
        ("logs_enabled", "1"),
        ("log_retention_days", "0"),
        ("log_retention_days", "99999999999"),
        ("log_retention_days", "[30]"),
        ("update_check", "\"monthly\""),
        ("update_check", "7"),
        ("update_url", "\"ftp://x\""),
        ("update_url", "\"http://update.example.cn/\""),
        ("update_url", "\"https://a b\""),
        ("update_url", "3"),
        ("bridge_port", "80"),
        ("bridge_port", "65536"),
        ("bridge_port", "0"),
        ("bridge_port", "\"17210\""),
        ("language", "\"fr\""),
        ("language", "\"zh\""),
        ("language", "{ a = 1 }"),
        ("file_key_dir", "\"relative/keys\""),
        ("file_key_dir", "5"),
    ];
    for (key, value) in cases {
        let text = format!("# header\n\n{key} = {value}\n");
        let err = Settings::parse(&text).map(|_| ()).unwrap_err();
        assert_eq!(err.code(), ErrorCode::ConfigInvalid, "{key} = {value}");
        let msg = err.to_string();
        assert!(msg.contains(key), "{key} = {value}: message does not name the key: {msg}");
        assert!(msg.contains("line 3"), "{key} = {value}: message does not give the line: {msg}");

        // The same through `set` (the CLI) and through load (with the file name).
        let mut s = Settings::default();
        let bare = value.trim_matches('"');
        if value.starts_with('"') && bare.parse::<i64>().is_ok() {
            continue; // typed on a command line, `30` is a number, and valid
        }
        let err = s.set(key, bare).unwrap_err();
        assert_eq!(err.code(), ErrorCode::ConfigInvalid, "set {key} {bare}");
        assert!(err.to_string().contains(key));
        assert_eq!(s, Settings::default(), "a rejected set changes nothing");
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("settings.toml");
    std::fs::write(&p, "bridge_port = 1\n").unwrap();
    let msg = Settings::load(&p).unwrap_err().to_string();
    assert!(msg.contains("settings.toml") && msg.contains("bridge_port") && msg.contains("line 1"), "{msg}");
}

#[test]
fn unknown_keys_are_rejected_by_name() {
    let err = Settings::parse("pin_cache_minutes = 5\npin_cach = 5\n\nlangauge = \"en\"\n").unwrap_err();
    assert_eq!(err.code(), ErrorCode::ConfigInvalid);
    let msg = err.to_string();
    assert!(msg.contains("`pin_cach` (line 2)") && msg.contains("`langauge` (line 4)"), "{msg}");
    // Sections are not keys we know either.
    let msg = Settings::parse("[logs]\nenabled = true\n").unwrap_err().to_string();
    assert!(msg.contains("`logs`"), "{msg}");
    let mut s = Settings::default();
    assert_eq!(s.set("nope", "1").unwrap_err().code(), ErrorCode::ConfigInvalid);
}

#[test]
fn malformed_toml_gives_the_line() {
    for (text, line) in [
        ("language = \"en\"\nbridge_port = = 3\n", 2),
        ("logs_enabled = true\n\n\nupdate_url = \"unterminated\n", 4),
        ("language = \"en\"\nlanguage = \"zh-CN\"\n", 2),
    ] {
        let err = Settings::parse(text).unwrap_err();
        assert_eq!(err.code(), ErrorCode::ConfigInvalid);
        assert!(err.to_string().contains(&format!("line {line}")), "{text:?}: {err}");
        let src = text.lines().nth(line - 1).unwrap();
        assert!(err.to_string().contains(src), "{text:?}: {err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("settings.toml");
    std::fs::write(&p, [0xffu8, 0xfe, 0x00]).unwrap();
    assert_eq!(Settings::load(&p).unwrap_err().code(), ErrorCode::ConfigInvalid);
}

#[test]
fn set_and_get_by_key() {
    let mut s = Settings::default();
    s.set("pin_cache_minutes", "off").unwrap();
    s.set("update_check", "never").unwrap();
    s.set("language", "en").unwrap();
    s.set("logs_enabled", "false").unwrap();
    s.set("bridge_port", "18000").unwrap();
    s.set("file_key_dir", "/tmp/k").unwrap();
    assert_eq!(s.get("pin_cache_minutes").as_deref(), Some("off"));
    assert_eq!(s.get("update_check").as_deref(), Some("never"));
    assert_eq!(s.get("language").as_deref(), Some("en"));
    assert_eq!(s.get("logs_enabled").as_deref(), Some("false"));
    assert_eq!(s.get("bridge_port").as_deref(), Some("18000"));
    assert_eq!(s.get("file_key_dir").as_deref(), Some("/tmp/k"));
    s.set("pin_cache_minutes", "10").unwrap();
    assert_eq!(s.get("pin_cache_minutes").as_deref(), Some("10"));
    assert_eq!(s.get("nope"), None);
    s.set("phone_listen", r#"["127.0.0.1:17211"]"#).unwrap();
    assert_eq!(s.phone_listen, ["127.0.0.1:17211".parse::<std::net::SocketAddr>().unwrap()]);
    assert!(s.get("phone_listen").unwrap().contains("127.0.0.1:17211"));
    assert!(s.set("phone_listen", "127.0.0.1:17211").is_err(), "a list, as in the settings file");
    s.set("phone_relay_url", "wss://relay.example.cn").unwrap();
    assert_eq!(s.get("phone_relay_url").as_deref(), Some("wss://relay.example.cn"));
    s.set("file_key_dir", "").unwrap();
    assert_eq!(s.file_key_dir, None);
    assert_eq!(s.get("file_key_dir"), None);
    for k in Settings::KEYS {
        // Optional keys with nothing set read as absent.
        let optional = [
            "file_key_dir",
            "pkcs11_modules",
            "skf_modules",
            "phone_listen",
            "phone_relay_url",
            "ca_url",
            "ocsp_responder",
            "crl_dir",
        ];
        assert!(optional.contains(k) || Settings::default().get(k).is_some(), "{k}");
    }
}

#[test]
fn save_is_atomic_round_trips_and_leaves_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("conf/settings.toml");
    let mut s = Settings::default();
    s.save(&path).unwrap();
    assert_eq!(Settings::load(&path).unwrap(), s);
    s.pin_cache_minutes = PinCacheMinutes::Five;
    s.language = Lang::En;
    s.update_url = "https://update.example.cn/".into();
    s.file_key_dir = Some(dir.path().join("钥匙"));
    s.save(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("pin_cache_minutes = 5") && text.contains("language = \"en\""), "{text}");
    assert_eq!(Settings::load(&path).unwrap(), s);
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("settings.toml")], "no temp files left");

    // Invalid values set in code are refused at save, and the old file survives.
    s.bridge_port = 80;
    assert_eq!(s.save(&path).unwrap_err().code(), ErrorCode::ConfigInvalid);
    assert_eq!(Settings::load(&path).unwrap().bridge_port, 17210);
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
    assert_eq!(names.len(), 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o077, 0, "owner-only");
    }
}

#[test]
fn serde_json_goes_through_the_same_checks() {
    let s: Settings = serde_json::from_str(r#"{"pin_cache_minutes": 60, "language": "en"}"#).unwrap();
    assert_eq!(s.pin_cache_minutes, PinCacheMinutes::Sixty);
    assert_eq!(s.language, Lang::En);
    let e = serde_json::from_str::<Settings>(r#"{"pin_cache_minutes": 2}"#).unwrap_err().to_string();
    assert!(e.contains("pin_cache_minutes"), "{e}");
    let e = serde_json::from_str::<Settings>(r#"{"pincache": 5}"#).unwrap_err().to_string();
    assert!(e.contains("pincache"), "{e}");
    let json = serde_json::to_value(Settings::default()).unwrap();
    assert_eq!(json["pin_cache_minutes"], 30);
    assert_eq!(json["language"], "zh-CN");
    let back: Settings = serde_json::from_value(json).unwrap();
    assert_eq!(back, Settings::default());
}

#[test]
fn paths() {
    let p = settings::paths_for(Some("/opt/kb".into())).unwrap();
    assert_eq!(p, Paths::under("/opt/kb"));
    let rel = settings::paths_for(Some("relhome".into())).unwrap();
    assert!(rel.config_dir.is_absolute() && rel.config_dir.ends_with("relhome/config"));
    // Without the override: the per-user directories (this machine has a home).
    if let Ok(p) = settings::paths_for(None) {
        assert!(p.config_dir.to_string_lossy().to_lowercase().contains("keybridge"), "{p:?}");
        assert_ne!(p.config_dir, p.log_dir);
    }
    let dir = tempfile::tempdir().unwrap();
    let p = Paths::under(dir.path().join("home"));
    p.create_all().unwrap();
    assert!(p.config_dir.is_dir() && p.data_dir.is_dir() && p.log_dir.is_dir());
    assert_eq!(p.audit_db(), dir.path().join("home/data/audit.sqlite3"));
}

/// `KEYBRIDGE_HOME` is read from the real environment. Env vars are process-global (and
/// setting them needs `unsafe`, forbidden here), so this runs the check below in a
/// child process of this test binary with the variable set.
#[test]
fn keybridge_home_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args(["--exact", "keybridge_home_child", "--nocapture", "--test-threads=1"])
        .env(settings::HOME_ENV, dir.path())
        .env("KB_TEST_HOME_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("KEYBRIDGE_HOME-OK"), "the child did not run: {stdout}");
    assert!(dir.path().join("config/settings.toml").is_file(), "the child saved under the home");
}

#[test]
fn keybridge_home_child() {
    if std::env::var_os("KB_TEST_HOME_CHILD").is_none() {
        return; // only meaningful when started by keybridge_home_is_honoured
    }
    let home = std::env::var_os(settings::HOME_ENV).unwrap();
    let p = settings::default_paths().unwrap();
    assert_eq!(p, Paths::under(&home));
    p.create_all().unwrap();
    Settings::default().save(p.settings_file()).unwrap();
    #[allow(clippy::print_stdout)]
    {
        println!("KEYBRIDGE_HOME-OK");
    }
}

// ------------------------------------------------------------------ logs

fn quiet(dir: &Path) -> LogConfig {
    LogConfig { stderr_level: None, ..LogConfig::new(dir) }
}

fn today_file() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    logs::log_file_name(secs)
}

fn read_logs(dir: &Path) -> String {
    logs::log_files(dir).unwrap().iter().map(|f| std::fs::read_to_string(&f.path).unwrap()).collect()
}

/// The only test that installs the process-wide subscriber.
#[test]
fn init_logging_writes_a_dated_file() {
    let dir = tempfile::tempdir().unwrap();
    let guard = logs::init_logging(&LogConfig { stderr_level: None, ..LogConfig::new(dir.path()) }).unwrap();
    assert!(guard.file_logging());
    tracing::info!(device = "file:demo", "打开介质 global-event-1");
    tracing::debug!("below the file level: not written");
    assert!(logs::init_logging(&quiet(dir.path())).is_err(), "a second global logger is refused");
    drop(guard);
    let files = logs::log_files(dir.path()).unwrap();
    assert_eq!(files.len(), 1);
    // The name carries today's UTC date (or yesterday's, if midnight passed meanwhile).
    assert!(files[0].name.starts_with("keybridge.20") && files[0].name.ends_with(".log"), "{}", files[0].name);
    let text = read_logs(dir.path());
    assert!(text.contains("打开介质 global-event-1") && text.contains("device=\"file:demo\""), "{text}");
    assert!(text.contains("INFO"), "{text}");
    assert!(!text.contains("below the file level"));
    assert!(!text.contains("\x1b["), "no colour codes in files");
}

#[test]
fn pin_never_reaches_the_log_file() {
    let dir = tempfile::tempdir().unwrap();
    let (sub, guard) = logs::build_subscriber(&quiet(dir.path())).unwrap();
    tracing::subscriber::with_default(sub, || {
        let pin = Pin::new("PIN-MARKER-7f3a");
        tracing::info!(?pin, "verifying the PIN");
        tracing::warn!(pin = ?Some(&pin), "retry");
    });
    drop(guard);
    assert!(dir.path().join(today_file()).is_file() || logs::log_files(dir.path()).unwrap().len() == 1);
    let text = read_logs(dir.path());
    assert!(text.contains("pin=Pin(REDACTED)"), "{text}");
    assert!(text.contains("Some(Pin(REDACTED))"), "{text}");
    assert!(!text.contains("PIN-MARKER-7f3a") && !text.contains("7f3a"), "{text}");
}

/// Logs name the user's certificates, media and the sites that used them: owner-only,
/// new or found wider (an existing 0755 directory, a 0644 file from an older version).
#[cfg(unix)]
#[test]
fn log_files_and_their_directory_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("fresh").join("logs");
    let old = dir.path().join("old");
    std::fs::create_dir(&old).unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(old.join(today_file()), "an older line\n").unwrap();
    std::fs::set_permissions(old.join(today_file()), std::fs::Permissions::from_mode(0o644)).unwrap();
    for logdir in [&fresh, &old] {
        let (sub, guard) = logs::build_subscriber(&quiet(logdir)).unwrap();
        tracing::subscriber::with_default(sub, || tracing::info!("mode check"));
        drop(guard);
        assert_eq!(mode(logdir), 0o700, "{}", logdir.display());
        let files = logs::log_files(logdir).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(mode(&files[0].path), 0o600, "{}", files[0].path.display());
        assert!(read_logs(logdir).contains("mode check"));
    }
    assert!(read_logs(&old).starts_with("an older line\n"), "appended, not replaced");
}

#[test]
fn disabled_logs_write_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let logdir = dir.path().join("logs");
    let (sub, guard) = logs::build_subscriber(&LogConfig { enabled: false, ..quiet(&logdir) }).unwrap();
    assert!(!guard.file_logging());
    tracing::subscriber::with_default(sub, || tracing::error!("nothing to disk"));
    drop(guard);
    assert!(!logdir.exists());

    let mut s = Settings { logs_enabled: false, log_retention_days: 3, ..Settings::default() };
    let cfg = LogConfig::from_settings(&s, &Paths::under(dir.path()));
    assert!(!cfg.enabled && cfg.retention_days == 3 && cfg.dir == logdir);
    s.logs_enabled = true;
    assert!(LogConfig::from_settings(&s, &Paths::under(dir.path())).enabled);
}

#[test]
fn old_files_are_pruned_others_kept() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["keybridge.2001-01-01.log", "keybridge.2001-01-02.log", "notes.txt", "keybridge.log"] {
        std::fs::write(dir.path().join(name), "old\n").unwrap();
    }
    let (sub, guard) = logs::build_subscriber(&LogConfig { retention_days: 2, ..quiet(dir.path()) }).unwrap();
    tracing::subscriber::with_default(sub, || tracing::info!("fresh"));
    drop(guard);
    let mut names: Vec<_> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    let today = today_file();
    let mut want = vec!["keybridge.log".to_string(), "notes.txt".to_string(), today];
    want.sort();
    assert_eq!(names, want);
}

struct Support {
    cert: Certificate,
    key: PrivateKey,
}

fn support_cert() -> Support {
    let key = PrivateKey::generate(Algorithm::Sm2).unwrap();
    let signer = LocalSigner::new(key.clone());
    let cert = self_signed(
        &CertificateParams::leaf("C=CN,O=KeyBridge 技术支持,CN=KeyBridge Support", KeyUsage::Encrypt, UnixTime::now(), 365),
        &signer,
    )
    .unwrap();
    Support { cert, key }
}

/// Decrypt, gunzip, untar: (name, bytes) in archive order.
fn open_bundle(envelope_bytes: &[u8], s: &Support) -> Vec<(String, Vec<u8>)> {
    let dec = LocalDecrypter::new(s.key.clone(), s.cert.clone()).unwrap();
    let mut tgz = Vec::new();
    envelope::decrypt(envelope_bytes, &mut tgz, &dec).unwrap();
    assert_eq!(&tgz[..2], &[0x1f, 0x8b], "gzip inside");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&tgz[..]));
    let mut out = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        assert_eq!(e.header().entry_type(), tar::EntryType::Regular);
        out.push((name, data));
    }
    out
}

#[test]
fn export_is_encrypted_to_support_and_opens_back() {
    let dir = tempfile::tempdir().unwrap();
    let logdir = dir.path().join("logs");
    // Today's file through tracing, plus older days and a large file (several chunks).
    let (sub, guard) = logs::build_subscriber(&LogConfig { retention_days: 10_000, ..quiet(&logdir) }).unwrap();
    tracing::subscriber::with_default(sub, || {
        let pin = Pin::new("PIN-MARKER-7f3a");
        tracing::info!(?pin, device = "pcsc:ACME-0001", "签名成功 export-event");
    });
    drop(guard);
    let big: String = (0..40_000).map(|i| format!("2001-01-01T00:00:00Z INFO line {i} 中文日志\n")).collect();
    std::fs::write(logdir.join("keybridge.2001-01-01.log"), &big).unwrap();
    std::fs::write(logdir.join("keybridge.2001-01-02.log"), "").unwrap();
    std::fs::write(logdir.join("private.txt"), "not a log: must not be exported").unwrap();

    let s = support_cert();
    let mut out = Vec::new();
    let mut calls: Vec<(u64, u64)> = Vec::new();
    let summary = logs::export_logs_with_progress(&logdir, &mut out, &s.cert, |d, t| calls.push((d, t))).unwrap();

    assert_eq!(summary.bytes_written, out.len() as u64);
    assert_eq!(summary.files.len(), 3);
    assert!(out.len() < big.len() / 2, "compressed before encryption ({} vs {})", out.len(), big.len());
    let total = summary.bytes_in;
    assert_eq!(calls.last(), Some(&(total, total)), "progress reaches the total");
    assert!(calls.len() > 3, "progress is reported as it goes: {}", calls.len());
    assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 == total), "monotonic");
    assert!(!out.windows(b"export-event".len()).any(|w| w == b"export-event"), "sealed, not plain");

    let entries = open_bundle(&out, &s);
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    let today = today_file();
    assert_eq!(names, vec!["manifest.json", "keybridge.2001-01-01.log", "keybridge.2001-01-02.log", today.as_str()]);
    assert_eq!(entries[1].1, big.as_bytes());
    assert!(entries[2].1.is_empty());
    let todays = String::from_utf8(entries[3].1.clone()).unwrap();
    assert!(todays.contains("签名成功 export-event") && todays.contains("pin=Pin(REDACTED)"), "{todays}");
    assert!(!entries.iter().any(|(_, d)| d.windows(15).any(|w| w == b"PIN-MARKER-7f3a")));

    let manifest: serde_json::Value = serde_json::from_slice(&entries[0].1).unwrap();
    assert_eq!(manifest["format"], "keybridge-log-export");
    assert_eq!(manifest["keybridge_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(manifest["os"], std::env::consts::OS);
    assert!(manifest["created"].as_str().unwrap().ends_with('Z'));
    let listed: Vec<&str> = manifest["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(listed, &names[1..]);
    assert_eq!(manifest["files"][0]["size"], big.len() as u64);
    assert_eq!(total, entries.iter().map(|(_, d)| d.len() as u64).sum::<u64>());
}

#[test]
fn export_of_an_empty_or_missing_dir_has_just_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let s = support_cert();
    let mut out = Vec::new();
    let summary = logs::export_logs(&dir.path().join("never-created"), &mut out, &s.cert).unwrap();
    assert!(summary.files.is_empty());
    let entries = open_bundle(&out, &s);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, "manifest.json");
}

#[test]
fn export_to_a_signing_only_certificate_is_refused() {
    let key = PrivateKey::generate(Algorithm::Sm2).unwrap();
    let cert = self_signed(&CertificateParams::leaf("CN=sign only", KeyUsage::Sign, UnixTime::now(), 30), &LocalSigner::new(key))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = logs::export_logs(dir.path(), Vec::new(), &cert).unwrap_err();
    assert_eq!(err.code(), ErrorCode::CertificateUsageMismatch, "{err}");
}
