//! `audit` (the key-use log) and `logs export` (encrypted log bundle for support).

use crate::ctx::{App, write_atomic_with};
use crate::output::{CliError, CliResult};
use clap::{Args, Subcommand};
use kb_service::audit::{AuditQuery, AuditRecord, auth_name};
use serde::Serialize;
use std::path::PathBuf;

#[derive(Args)]
pub(crate) struct AuditArgs {
    /// Records at or after this time: RFC 3339 (`2026-05-01T08:00:00+08:00`) or a date
    /// (`2026-05-01`, UTC midnight).
    #[arg(long, conflicts_with = "days")]
    from: Option<String>,
    /// Records of the last N days.
    #[arg(long)]
    days: Option<u32>,
    /// Records before this time (same formats as --from).
    #[arg(long)]
    to: Option<String>,
    /// Only failed operations.
    #[arg(long)]
    failures: bool,
    /// At most this many records (newest first).
    #[arg(long)]
    limit: Option<u32>,
    /// Write the records as CSV (UTF-8 with BOM, for Excel) to this file instead.
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
}

/// Days since 1970-01-01 for a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parse RFC 3339 (`YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)`) or a bare date into Unix ms.
pub(crate) fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    let num = |a: usize, b: usize| -> Option<i64> {
        let t = s.get(a..b)?;
        if t.bytes().all(|c| c.is_ascii_digit()) { t.parse().ok() } else { None }
    };
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let day_ms = days_from_civil(y, mo, d) * 86_400_000;
    if b.len() == 10 {
        return Some(day_ms);
    }
    if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 19 || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, se) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_ms = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        let digits = &s[start..i.min(start + 3)];
        frac_ms = digits.parse::<i64>().ok()? * 10i64.pow(3 - digits.len() as u32);
    }
    let offset_min = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(c @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1, i + 3)?, num(i + 4, i + 6)?);
            let m = oh * 60 + om;
            if *c == b'-' { -m } else { m }
        }
        _ => return None,
    };
    Some(day_ms + ((h * 60 + mi - offset_min) * 60 + se) * 1000 + frac_ms)
}

fn time_arg(name: &str, s: &str) -> CliResult<i64> {
    parse_time(s)
        .ok_or_else(|| CliError::input(format!("{name} {s:?}: use RFC 3339 (2026-05-01T08:00:00+08:00) or a date (2026-05-01)")))
}

/// `2026-01-02T03:04:05.678Z`.
fn rfc3339_ms(ms: i64) -> String {
    let t = kb_pki::time::UnixTime(ms.div_euclid(1000)).to_rfc3339();
    match t.strip_suffix('Z') {
        Some(base) => format!("{base}.{:03}Z", ms.rem_euclid(1000)),
        None => t,
    }
}

#[derive(Serialize)]
struct Row {
    time: String,
    time_ms: i64,
    client: String,
    operation: String,
    device: String,
    device_type: &'static str,
    device_model: String,
    certificate: String,
    result: &'static str,
    error_code: Option<u32>,
    error_name: Option<&'static str>,
    auth: &'static str,
}

fn row(r: AuditRecord) -> Row {
    Row {
        time: rfc3339_ms(r.time_ms),
        time_ms: r.time_ms,
        client: r.client,
        operation: r.operation,
        device: r.device_id.0,
        device_type: r.device_type.name(),
        device_model: r.device_model,
        certificate: r.certificate,
        result: if r.ok { "ok" } else { "error" },
        error_code: r.error.map(|e| e.number()),
        error_name: r.error.map(|e| e.name()),
        auth: auth_name(r.auth),
    }
}

/// `keybridge audit`.
pub(crate) fn audit(app: &App, a: AuditArgs) -> CliResult {
    let home = app.home()?;
    let log = home.audit()?;
    let mut q = AuditQuery { only_failures: a.failures, limit: a.limit, ..AuditQuery::default() };
    if let Some(f) = &a.from {
        q.from_ms = Some(time_arg("--from", f)?);
    }
    if let Some(n) = a.days {
        q.from_ms = Some(kb_service::audit::now_ms() - i64::from(n) * 86_400_000);
    }
    if let Some(t) = &a.to {
        q.to_ms = Some(time_arg("--to", t)?);
    }
    let o = &app.out;
    if let Some(path) = &a.csv {
        let n = write_atomic_with(path, |f| Ok(log.export_csv_filtered(std::io::BufWriter::new(f), &q)?))?;
        #[derive(Serialize)]
        struct Exported {
            csv: String,
            records: u64,
        }
        let e = Exported { csv: path.display().to_string(), records: n };
        o.show(&e, || {
            format!("{} {} ({} {})", o.t("已导出审计记录", "audit records exported to"), e.csv, e.records, o.t("条", "records"))
        });
        return Ok(());
    }
    let rows: Vec<Row> = log.query(&q)?.into_iter().map(row).collect();
    #[derive(Serialize)]
    struct Listed<'a> {
        records: &'a [Row],
    }
    o.show(&Listed { records: &rows }, || {
        if rows.is_empty() {
            return o.t("没有审计记录。", "No audit records.").to_string();
        }
        rows.iter()
            .map(|r| {
                let result = match (r.error_code, r.error_name) {
                    (Some(c), Some(n)) => format!("error E{c} {n}"),
                    _ => r.result.to_string(),
                };
                format!(
                    "{}  {:<5} {:<18} {:<14} {:<12} {}{}",
                    r.time,
                    r.client,
                    r.operation,
                    r.device,
                    r.auth,
                    result,
                    if r.certificate.is_empty() { String::new() } else { format!("  [{}]", r.certificate) }
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}

#[derive(Args)]
pub(crate) struct LogsArgs {
    #[command(subcommand)]
    cmd: LogsCmd,
}

#[derive(Subcommand)]
enum LogsCmd {
    /// Bundle the log files, compressed and encrypted to the support certificate.
    Export {
        /// The support team's encryption certificate (DER or PEM).
        #[arg(long = "to", value_name = "SUPPORT_CERT")]
        to: PathBuf,
        /// Where to write the encrypted bundle (CMS EnvelopedData).
        #[arg(long)]
        out: PathBuf,
    },
}

/// `keybridge logs export`.
pub(crate) fn logs(app: &App, a: LogsArgs) -> CliResult {
    let LogsCmd::Export { to, out } = a.cmd;
    let cert = crate::input::read_certificate(&to)?;
    let home = app.home()?;
    let total: u64 = kb_service::logs::log_files(&home.paths.log_dir)?.iter().map(|f| f.size).sum();
    let bar = app.term.progress(total, app.out.json(), app.out.t("导出日志", "exporting logs"));
    let summary = write_atomic_with(&out, |f| {
        let w = std::io::BufWriter::new(f);
        Ok(kb_service::logs::export_logs_with_progress(&home.paths.log_dir, w, &cert, |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        })?)
    });
    app.term.progress_done(&bar);
    let summary = summary?;
    #[derive(Serialize)]
    struct Exported<'a> {
        out: String,
        recipient: String,
        #[serde(flatten)]
        summary: &'a kb_service::logs::ExportSummary,
    }
    let e = Exported { out: out.display().to_string(), recipient: cert.subject(), summary: &summary };
    let o = &app.out;
    o.show(&e, || {
        format!(
            "{} {} {} → {} ({} bytes, {} {})",
            o.t("已导出", "exported"),
            summary.files.len(),
            o.t("个日志文件", "log files"),
            e.out,
            summary.bytes_written,
            o.t("加密给", "encrypted to"),
            e.recipient
        )
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn rfc3339_and_dates() {
        assert_eq!(parse_time("1970-01-01"), Some(0));
        assert_eq!(parse_time("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(parse_time("1970-01-01T08:00:00+08:00"), Some(0));
        assert_eq!(parse_time("1970-01-01T00:00:00.25Z"), Some(250));
        assert_eq!(parse_time("2026-11-18T11:06:40.123Z"), Some(1_795_000_000_123));
        for bad in ["", "2026-13-01", "2026-01-01T25:00:00Z", "2026-01-01T10:00:00", "yesterday", "2026-01-01T10:00:00+0800"] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }
}
