//! The audit log: every use of a key is recorded — who asked (app or web origin), what,
//! with which medium and certificate, how the PIN was obtained, and how it ended.
//!
//! [`AuditRecord`] and [`AuditSink`] are the interface the device manager writes to;
//! [`AuditLog`] is the SQLite store behind it.

use kb_types::{DeviceId, ErrorCode, TransportKind};
use serde::{Deserialize, Serialize};

/// How the user was verified for an operation (how the PIN was obtained, or who
/// verified it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthType {
    /// No PIN was needed (public data).
    None,
    /// Typed by the user for this operation.
    PinEntered,
    /// Taken from the PIN cache.
    PinCached,
    /// Entered on the phone acting as the key.
    Phone,
    /// Verified by the medium itself (a reader's PIN pad, a BLE key's keypad); the PC
    /// never saw the PIN.
    OnMedium,
}

/// One key use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Unix time in milliseconds.
    pub time_ms: i64,
    /// Who asked: `cli`, `desktop`, an app name, or a web origin (`https://…`).
    pub client: String,
    /// Operation: `sign`, `decrypt`, `change_pin`, `unblock_pin`, `keygen`,
    /// `import_certificate`, `delete_certificate`, `write_seal`, …
    pub operation: String,
    /// Device id.
    pub device_id: DeviceId,
    /// Device transport.
    pub device_type: TransportKind,
    /// Device model.
    pub device_model: String,
    /// Certificate used: subject and serial, or empty.
    pub certificate: String,
    /// Whether it succeeded.
    pub ok: bool,
    /// The error code when it failed.
    pub error: Option<ErrorCode>,
    /// How the PIN was obtained.
    pub auth: AuthType,
}

/// Where audit records go. The device manager holds one; tests use an in-memory one.
pub trait AuditSink: Send + Sync {
    /// Store a record. Failing to audit is an error the caller reports, never ignores.
    fn record(&self, rec: &AuditRecord) -> crate::Result<()>;
}

// ---------------------------------------------------------------------------------------
// The SQLite store.
// ---------------------------------------------------------------------------------------

use crate::ServiceError;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, TransactionBehavior, params_from_iter};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// The schema version this build writes (`PRAGMA user_version`). A store with a newer
/// version is refused rather than misread.
pub const SCHEMA_VERSION: i64 = 1;

/// How long a writer waits for another process (CLI vs desktop) holding the write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA_V1: &str = "
CREATE TABLE audit (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ms       INTEGER NOT NULL,
    client        TEXT    NOT NULL,
    operation     TEXT    NOT NULL,
    device_id     TEXT    NOT NULL,
    device_type   TEXT    NOT NULL,
    device_model  TEXT    NOT NULL,
    certificate   TEXT    NOT NULL,
    ok            INTEGER NOT NULL,
    error_code    INTEGER,
    error_name    TEXT,
    auth          TEXT    NOT NULL
);
CREATE INDEX audit_time ON audit(time_ms);
CREATE INDEX audit_device_time ON audit(device_id, time_ms);
";

macro_rules! columns {
    () => {
        "time_ms, client, operation, device_id, device_type, device_model, certificate, ok, error_code, error_name, auth"
    };
}
const COLUMNS: &str = columns!();
const INSERT: &str = concat!("INSERT INTO audit (", columns!(), ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)");

/// Which records to read. The default selects everything, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only records at or after this time (Unix ms, inclusive).
    pub from_ms: Option<i64>,
    /// Only records before this time (Unix ms, exclusive).
    pub to_ms: Option<i64>,
    /// Only records of this device.
    pub device: Option<DeviceId>,
    /// Only failed operations.
    pub only_failures: bool,
    /// At most this many records (the newest ones). `None` = no limit.
    pub limit: Option<u32>,
}

impl AuditQuery {
    /// Everything.
    pub fn all() -> Self {
        Self::default()
    }

    /// Records with `from_ms <= time_ms < to_ms`.
    pub fn between(from_ms: i64, to_ms: i64) -> Self {
        Self { from_ms: Some(from_ms), to_ms: Some(to_ms), ..Self::default() }
    }

    /// `WHERE …` clause (possibly empty) and its parameters.
    fn where_clause(&self) -> (String, Vec<SqlValue>) {
        let mut conds = Vec::new();
        let mut params = Vec::new();
        if let Some(f) = self.from_ms {
            params.push(SqlValue::Integer(f));
            conds.push(format!("time_ms >= ?{}", params.len()));
        }
        if let Some(t) = self.to_ms {
            params.push(SqlValue::Integer(t));
            conds.push(format!("time_ms < ?{}", params.len()));
        }
        if let Some(d) = &self.device {
            params.push(SqlValue::Text(d.0.clone()));
            conds.push(format!("device_id = ?{}", params.len()));
        }
        if self.only_failures {
            conds.push("ok = 0".to_string());
        }
        let clause = if conds.is_empty() { String::new() } else { format!(" WHERE {}", conds.join(" AND ")) };
        (clause, params)
    }

    fn select_sql(&self) -> (String, Vec<SqlValue>) {
        let (clause, params) = self.where_clause();
        let limit = match self.limit {
            Some(n) => format!(" LIMIT {n}"),
            None => String::new(),
        };
        (format!("SELECT {COLUMNS} FROM audit{clause} ORDER BY time_ms DESC, id DESC{limit}"), params)
    }
}

/// The audit store: one SQLite file (WAL mode), shared safely by several processes —
/// the CLI and the desktop app may write at the same time.
///
/// There is deliberately no column for a PIN, and [`AuditRecord`] has no field for one.
pub struct AuditLog {
    conn: Mutex<Connection>,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").field("path", &self.path).finish_non_exhaustive()
    }
}

fn db(e: rusqlite::Error) -> ServiceError {
    ServiceError::Audit(e.to_string())
}

impl AuditLog {
    /// Open (creating if needed) the store at `path`, creating its directory, switching
    /// to WAL and creating or checking the schema.
    pub fn open(path: impl AsRef<Path>) -> crate::Result<Self> {
        let path = path.as_ref();
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        create_private(path)?;
        let conn = Connection::open(path).map_err(db)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(db)?;
        // Switching the journal mode needs an exclusive lock, and SQLite reports BUSY
        // without waiting when two connections race for it: retry.
        let mode: String = retry_busy(|| conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))).map_err(db)?;
        if !mode.eq_ignore_ascii_case("wal") {
            // e.g. a file system without shared memory; still correct, just slower.
            tracing::warn!(journal_mode = %mode, "audit log: WAL mode not available");
        } else {
            // WAL with synchronous=NORMAL: a record is in the log once written, and the file
            // is never corrupted, but the WAL is not fsynced on every commit — after a power
            // loss (not a crash of KeyBridge) the last records written may be missing. That
            // fsync was ~0.4 ms per key use on this machine's disk, three times the SM2
            // signature it records (benches/service_overhead.rs).
            conn.pragma_update(None, "synchronous", "NORMAL").map_err(db)?;
        }
        Self::init(conn, Some(path.to_path_buf()))
    }

    /// A store in memory (tests, or when the data directory is unusable).
    pub fn open_in_memory() -> crate::Result<Self> {
        let conn = Connection::open_in_memory().map_err(db)?;
        Self::init(conn, None)
    }

    fn init(mut conn: Connection, path: Option<PathBuf>) -> crate::Result<Self> {
        // Several processes may open a fresh file at once: take the write lock first,
        // then look at the version, so exactly one of them creates the schema.
        let version = retry_busy(|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let v: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
            if v == 0 {
                tx.execute_batch(SCHEMA_V1)?;
                tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
                tx.commit()?;
                return Ok(SCHEMA_VERSION);
            }
            Ok(v) // read only: dropping the transaction rolls it back
        })
        .map_err(db)?;
        match version {
            SCHEMA_VERSION => {}
            v if v > SCHEMA_VERSION => {
                return Err(ServiceError::Audit(format!(
                    "the audit log has schema version {v}, written by a newer KeyBridge (this one reads {SCHEMA_VERSION})"
                )));
            }
            v => return Err(ServiceError::Audit(format!("unknown audit log schema version {v}"))),
        }
        Ok(Self { conn: Mutex::new(conn), path })
    }

    /// Where the store lives (`None` in memory).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic elsewhere while holding the lock leaves the connection usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The schema version stored in the file.
    pub fn schema_version(&self) -> crate::Result<i64> {
        self.conn().pragma_query_value(None, "user_version", |r| r.get(0)).map_err(db)
    }

    /// Matching records, newest first.
    pub fn query(&self, q: &AuditQuery) -> crate::Result<Vec<AuditRecord>> {
        let (sql, params) = q.select_sql();
        let conn = self.conn();
        let mut stmt = conn.prepare(&sql).map_err(db)?;
        let mut rows = stmt.query(params_from_iter(params)).map_err(db)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(db)? {
            out.push(row_to_record(row)?);
        }
        Ok(out)
    }

    /// How many records match (`limit` is ignored).
    pub fn count(&self, q: &AuditQuery) -> crate::Result<u64> {
        let (clause, params) = q.where_clause();
        let n: i64 = self
            .conn()
            .query_row(&format!("SELECT COUNT(*) FROM audit{clause}"), params_from_iter(params), |r| r.get(0))
            .map_err(db)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The newest record's time, if any.
    pub fn newest_time_ms(&self) -> crate::Result<Option<i64>> {
        self.conn().query_row("SELECT MAX(time_ms) FROM audit", [], |r| r.get::<_, Option<i64>>(0)).map_err(db)
    }

    /// Delete records older than `time_ms` (exclusive). Returns how many were deleted.
    pub fn prune_older_than(&self, time_ms: i64) -> crate::Result<u64> {
        let mut conn = self.conn();
        let n = retry_busy(|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let n = tx.execute("DELETE FROM audit WHERE time_ms < ?1", [time_ms])?;
            tx.commit()?;
            Ok(n)
        })
        .map_err(db)?;
        Ok(n as u64)
    }

    /// Write every record as CSV (newest first). See [`AuditLog::export_csv_filtered`].
    pub fn export_csv(&self, w: impl Write) -> crate::Result<u64> {
        self.export_csv_filtered(w, &AuditQuery::all())
    }

    /// Write matching records as CSV, newest first, streaming (constant memory).
    ///
    /// The output is UTF-8 with a byte-order mark and CRLF line ends (RFC 4180), so Excel
    /// shows Chinese text correctly. Fields that Excel would read as a formula (starting
    /// with `=`, `+`, `-`, `@`, tab or CR) are prefixed with `'`: a client name or web
    /// origin is caller-controlled text. Times are UTC. Returns the number of records.
    pub fn export_csv_filtered(&self, mut w: impl Write, q: &AuditQuery) -> crate::Result<u64> {
        w.write_all("\u{feff}".as_bytes())?;
        w.write_all(
            b"time_utc,time_ms,client,operation,device_id,device_type,device_model,certificate,result,error_code,error_name,auth\r\n",
        )?;
        let (sql, params) = q.select_sql();
        let conn = self.conn();
        let mut stmt = conn.prepare(&sql).map_err(db)?;
        let mut rows = stmt.query(params_from_iter(params)).map_err(db)?;
        let mut n = 0u64;
        while let Some(row) = rows.next().map_err(db)? {
            let r = row_to_record(row)?;
            let fields = [
                rfc3339_ms(r.time_ms),
                r.time_ms.to_string(),
                r.client,
                r.operation,
                r.device_id.0,
                r.device_type.name().to_string(),
                r.device_model,
                r.certificate,
                if r.ok { "ok" } else { "failed" }.to_string(),
                r.error.map(|e| e.number().to_string()).unwrap_or_default(),
                r.error.map(|e| e.name().to_string()).unwrap_or_default(),
                auth_name(r.auth).to_string(),
            ];
            let line = fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(",");
            w.write_all(line.as_bytes())?;
            w.write_all(b"\r\n")?;
            n += 1;
        }
        w.flush()?;
        Ok(n)
    }
}

impl AuditSink for AuditLog {
    fn record(&self, rec: &AuditRecord) -> crate::Result<()> {
        let mut conn = self.conn();
        // BEGIN IMMEDIATE takes the write lock up front (waiting for another process
        // through the busy handler) instead of upgrading a read snapshot, which SQLite
        // may refuse at once. BUSY means nothing was written, so a retry is safe.
        retry_busy(|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // Prepared once per connection (the statement cache), not parsed per record.
            tx.prepare_cached(INSERT)?.execute(rusqlite::params![
                rec.time_ms,
                rec.client,
                rec.operation,
                rec.device_id.0,
                rec.device_type.name(),
                rec.device_model,
                rec.certificate,
                rec.ok,
                rec.error.map(|e| i64::from(e.number())),
                rec.error.map(|e| e.name()),
                auth_name(rec.auth),
            ])?;
            tx.commit()
        })
        .map_err(db)
    }
}

/// Run `f` again while SQLite says BUSY/LOCKED without having waited (lock upgrades
/// and journal-mode changes), for up to [`BUSY_TIMEOUT`].
fn retry_busy<T>(mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let start = std::time::Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        match f() {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                    && start.elapsed() < BUSY_TIMEOUT =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// The stable name an [`AuthType`] is stored and exported under.
pub fn auth_name(a: AuthType) -> &'static str {
    match a {
        AuthType::None => "none",
        AuthType::PinEntered => "pin_entered",
        AuthType::PinCached => "pin_cached",
        AuthType::Phone => "phone",
        AuthType::OnMedium => "on_medium",
    }
}

fn parse_auth(s: &str) -> Option<AuthType> {
    [AuthType::None, AuthType::PinEntered, AuthType::PinCached, AuthType::Phone, AuthType::OnMedium]
        .into_iter()
        .find(|a| auth_name(*a) == s)
}

fn row_to_record(row: &rusqlite::Row<'_>) -> crate::Result<AuditRecord> {
    let device_type: String = row.get(4).map_err(db)?;
    let auth: String = row.get(10).map_err(db)?;
    let code: Option<i64> = row.get(8).map_err(db)?;
    let name: Option<String> = row.get(9).map_err(db)?;
    let error = match (code, name) {
        (None, _) => None,
        // The number is the contract; the name helps if a newer build wrote a code this
        // one does not know (then it reads as `internal`, never as success).
        (Some(n), name) => Some(
            u32::try_from(n)
                .ok()
                .and_then(ErrorCode::from_number)
                .or_else(|| name.as_deref().and_then(ErrorCode::from_name))
                .unwrap_or(ErrorCode::Internal),
        ),
    };
    Ok(AuditRecord {
        time_ms: row.get(0).map_err(db)?,
        client: row.get(1).map_err(db)?,
        operation: row.get(2).map_err(db)?,
        device_id: DeviceId(row.get(3).map_err(db)?),
        device_type: TransportKind::from_name(&device_type)
            .ok_or_else(|| ServiceError::Audit(format!("unknown device type {device_type:?} in the audit log")))?,
        device_model: row.get(5).map_err(db)?,
        certificate: row.get(6).map_err(db)?,
        ok: row.get(7).map_err(db)?,
        error,
        auth: parse_auth(&auth).ok_or_else(|| ServiceError::Audit(format!("unknown auth type {auth:?} in the audit log")))?,
    })
}

/// One CSV field: quoted when needed, formula-looking text neutralised.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_string() };
    if s.contains([',', '"', '\r', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}

/// `2026-01-02T03:04:05.678Z`.
pub(crate) fn rfc3339_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z", sod / 3600, sod % 3600 / 60, sod % 60)
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) → days since 1970-01-01.
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Create `path` readable by its owner only, if it does not exist yet. SQLite gives its
/// `-wal`/`-shm` files the database file's permissions, so they follow.
fn create_private(path: &Path) -> crate::Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    match o.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_795_000_000_123), "2026-11-18T11:06:40.123Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
        for days in [-800_000i64, -1, 0, 59, 60, 365, 10_957, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn csv_quoting() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=1+1"), "'=1+1");
        assert_eq!(csv_field("@cmd,x"), "\"'@cmd,x\"");
    }
}
