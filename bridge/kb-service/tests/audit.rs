//! The SQLite audit log: round trip, queries, order, CSV, concurrent writers, schema.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kb_service::audit::{AuditLog, AuditQuery, AuditRecord, AuditSink, AuthType, SCHEMA_VERSION};
use kb_types::{DeviceId, ErrorCode, HasErrorCode, TransportKind};

const T0: i64 = 1_780_000_000_000;

fn rec(i: i64, ok: bool) -> AuditRecord {
    AuditRecord {
        time_ms: T0 + i * 1000,
        client: "https://ebid.example.cn".into(),
        operation: "sign".into(),
        device_id: DeviceId::new(TransportKind::File, "demo"),
        device_type: TransportKind::File,
        device_model: "KeyBridge 文件型".into(),
        certificate: "CN=张三,O=某某建设集团有限公司 / 0A1B".into(),
        ok,
        error: if ok { None } else { Some(ErrorCode::WrongPin) },
        auth: if ok { AuthType::PinCached } else { AuthType::PinEntered },
    }
}

#[test]
fn round_trip_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path().join("sub/audit.sqlite3")).unwrap();
    let kinds = TransportKind::ALL;
    let auths = [AuthType::None, AuthType::PinEntered, AuthType::PinCached, AuthType::Phone, AuthType::OnMedium];
    let mut written = Vec::new();
    for (i, kind) in kinds.iter().enumerate() {
        let mut r = rec(i as i64, i % 2 == 0);
        r.device_type = *kind;
        r.device_id = DeviceId::new(*kind, &format!("SN-{i}"));
        r.auth = auths[i % auths.len()];
        r.error = if r.ok { None } else { Some(ErrorCode::ALL[i % ErrorCode::ALL.len()]) };
        r.client = format!("客户端 \"{i}\", with, commas\nand a newline");
        log.record(&r).unwrap();
        written.push(r);
    }
    let mut back = log.query(&AuditQuery::all()).unwrap();
    back.reverse();
    assert_eq!(back, written);
    assert_eq!(log.count(&AuditQuery::all()).unwrap(), kinds.len() as u64);
    drop(log);
    // Reopen: still there, same schema.
    let log = AuditLog::open(dir.path().join("sub/audit.sqlite3")).unwrap();
    assert_eq!(log.count(&AuditQuery::all()).unwrap(), kinds.len() as u64);
}

#[test]
fn error_stored_as_stable_code_and_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.sqlite3");
    let log = AuditLog::open(&path).unwrap();
    log.record(&rec(0, false)).unwrap();
    drop(log);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let (code, name): (i64, String) =
        conn.query_row("SELECT error_code, error_name FROM audit", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!(code, 4001);
    assert_eq!(name, "wrong_pin");
    // No column could hold a PIN.
    let cols: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('audit')")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(cols.iter().all(|c| !c.to_lowercase().contains("pin")), "{cols:?}");
}

#[test]
fn time_range_device_failures_limit_and_order() {
    let log = AuditLog::open_in_memory().unwrap();
    // Insert out of order; two records share a timestamp.
    for i in [5, 1, 9, 3, 7, 0, 2, 8, 6, 4] {
        let mut r = rec(i, i % 3 != 0);
        if i >= 5 {
            r.device_id = DeviceId::new(TransportKind::Pcsc, "ACME-0001");
            r.device_type = TransportKind::Pcsc;
        }
        log.record(&r).unwrap();
    }
    let mut same = rec(4, true);
    same.operation = "decrypt".into();
    log.record(&same).unwrap();

    let all = log.query(&AuditQuery::all()).unwrap();
    assert_eq!(all.len(), 11);
    assert!(all.windows(2).all(|w| w[0].time_ms >= w[1].time_ms), "newest first");
    // Same time: the later insert comes first.
    assert_eq!(all[5].time_ms, T0 + 4000);
    assert_eq!(all[5].operation, "decrypt");

    // [from, to): 2, 3, 4, 4(decrypt) — 5 is excluded.
    let q = AuditQuery::between(T0 + 2000, T0 + 5000);
    let r = log.query(&q).unwrap();
    assert_eq!(r.iter().map(|r| r.time_ms - T0).collect::<Vec<_>>(), vec![4000, 4000, 3000, 2000]);
    assert_eq!(log.count(&q).unwrap(), 4);

    let fails = AuditQuery { only_failures: true, ..AuditQuery::all() };
    let r = log.query(&fails).unwrap();
    assert_eq!(r.iter().map(|r| (r.time_ms - T0) / 1000).collect::<Vec<_>>(), vec![9, 6, 3, 0]);
    assert!(r.iter().all(|r| !r.ok && r.error == Some(ErrorCode::WrongPin)));

    let dev = AuditQuery { device: Some(DeviceId::new(TransportKind::Pcsc, "ACME-0001")), ..AuditQuery::all() };
    assert_eq!(log.count(&dev).unwrap(), 5);
    let dev_fail_limited = AuditQuery { only_failures: true, limit: Some(1), ..dev.clone() };
    let r = log.query(&dev_fail_limited).unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].time_ms, T0 + 9000);
    assert_eq!(log.count(&dev_fail_limited).unwrap(), 2, "count ignores the limit");

    let newest3 = log.query(&AuditQuery { limit: Some(3), ..AuditQuery::all() }).unwrap();
    assert_eq!(newest3.iter().map(|r| (r.time_ms - T0) / 1000).collect::<Vec<_>>(), vec![9, 8, 7]);
    assert_eq!(log.newest_time_ms().unwrap(), Some(T0 + 9000));

    assert_eq!(log.prune_older_than(T0 + 5000).unwrap(), 6);
    assert_eq!(log.count(&AuditQuery::all()).unwrap(), 5);
    assert!(log.query(&AuditQuery::all()).unwrap().iter().all(|r| r.time_ms >= T0 + 5000));
}

/// Minimal RFC 4180 parser for the test (quoted fields, doubled quotes, CRLF).
fn parse_csv(s: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut chars = s.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                c => field.push(c),
            }
        } else {
            match c {
                '"' => quoted = true,
                ',' => row.push(std::mem::take(&mut field)),
                '\r' if chars.peek() == Some(&'\n') => {
                    chars.next();
                    row.push(std::mem::take(&mut field));
                    rows.push(std::mem::take(&mut row));
                }
                c => field.push(c),
            }
        }
    }
    assert!(field.is_empty() && row.is_empty(), "CSV must end with CRLF");
    rows
}

#[test]
fn csv_export_parses_back_with_chinese_intact() {
    let log = AuditLog::open_in_memory().unwrap();
    let mut tricky = rec(1, false);
    tricky.client = "投标工具 \"标书制作\", v2\n第二行".into();
    tricky.device_model = "=HYPERLINK(\"http://evil\")".into();
    log.record(&rec(0, true)).unwrap();
    log.record(&tricky).unwrap();

    let mut out = Vec::new();
    assert_eq!(log.export_csv(&mut out).unwrap(), 2);
    assert_eq!(&out[..3], b"\xEF\xBB\xBF", "UTF-8 BOM for Excel");
    let text = std::str::from_utf8(&out[3..]).unwrap();
    let rows = parse_csv(text);
    assert_eq!(rows.len(), 3);
    let header = &rows[0];
    assert_eq!(header[0], "time_utc");
    let col = |name: &str| header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name}"));
    for r in &rows {
        assert_eq!(r.len(), header.len());
    }
    // Newest first: the tricky failed record.
    let r = &rows[1];
    assert_eq!(r[col("client")], "投标工具 \"标书制作\", v2\n第二行");
    assert_eq!(r[col("certificate")], "CN=张三,O=某某建设集团有限公司 / 0A1B");
    assert_eq!(r[col("device_model")], "'=HYPERLINK(\"http://evil\")", "formula neutralised");
    assert_eq!(r[col("result")], "failed");
    assert_eq!(r[col("error_code")], "4001");
    assert_eq!(r[col("error_name")], "wrong_pin");
    assert_eq!(r[col("auth")], "pin_entered");
    assert_eq!(r[col("device_id")], "file:demo");
    assert_eq!(r[col("device_type")], "file");
    assert_eq!(r[col("time_ms")], (T0 + 1000).to_string());
    assert_eq!(r[col("time_utc")], "2026-05-28T20:26:41.000Z");
    let r = &rows[2];
    assert_eq!(r[col("result")], "ok");
    assert_eq!(r[col("error_code")], "");
    assert_eq!(r[col("device_model")], "KeyBridge 文件型");

    // Filtered export.
    let mut out = Vec::new();
    let n = log.export_csv_filtered(&mut out, &AuditQuery { only_failures: true, ..AuditQuery::all() }).unwrap();
    assert_eq!(n, 1);
    assert_eq!(parse_csv(std::str::from_utf8(&out[3..]).unwrap()).len(), 2);
}

#[test]
fn two_handles_two_threads_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.sqlite3");
    const N: i64 = 200;
    // Both open the fresh file at once: exactly one creates the schema.
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let handles: Vec<_> = ["cli", "desktop"]
        .into_iter()
        .map(|client| {
            let path = path.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let log = AuditLog::open(&path).unwrap();
                for i in 0..N {
                    let mut r = rec(i, true);
                    r.client = client.into();
                    log.record(&r).unwrap();
                    if i % 50 == 0 {
                        // Reads interleave with the other writer.
                        log.query(&AuditQuery { limit: Some(10), ..AuditQuery::all() }).unwrap();
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let log = AuditLog::open(&path).unwrap();
    let all = log.query(&AuditQuery::all()).unwrap();
    assert_eq!(all.len() as i64, 2 * N);
    for c in ["cli", "desktop"] {
        assert_eq!(all.iter().filter(|r| r.client == c).count() as i64, N);
    }
    let mode: String = rusqlite::Connection::open(&path).unwrap().query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode.to_lowercase(), "wal");
}

#[test]
fn one_handle_shared_by_threads() {
    let log = std::sync::Arc::new(AuditLog::open_in_memory().unwrap());
    let sink: std::sync::Arc<dyn AuditSink> = log.clone();
    let hs: Vec<_> = (0..4)
        .map(|t| {
            let sink = sink.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    sink.record(&rec(t * 100 + i, true)).unwrap();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(log.count(&AuditQuery::all()).unwrap(), 100);
}

#[test]
fn schema_version_is_recorded_and_newer_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.sqlite3");
    let log = AuditLog::open(&path).unwrap();
    assert_eq!(SCHEMA_VERSION, 1);
    assert_eq!(log.schema_version().unwrap(), 1);
    drop(log);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(v, 1);
    conn.pragma_update(None, "user_version", 2).unwrap();
    drop(conn);
    let err = AuditLog::open(&path).unwrap_err();
    assert_eq!(err.code(), ErrorCode::Io);
    assert!(err.to_string().contains("newer"), "{err}");
}

#[test]
fn not_a_database_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.sqlite3");
    std::fs::write(&path, vec![0x42u8; 4096]).unwrap();
    assert!(AuditLog::open(&path).is_err());
}

/// The audit log says who used which key when: only its owner may read it.
#[cfg(unix)]
#[test]
fn audit_database_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.sqlite3");
    let log = kb_service::audit::AuditLog::open(&path).unwrap();
    drop(log);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "audit DB mode {mode:o}");
}
