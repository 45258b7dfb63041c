//! Revocation at the dev CA: `revoke` records a certificate it issued (or was told about)
//! as revoked with a reason; `crl` publishes a fresh signed CRL of everything revoked
//! (thisUpdate now, nextUpdate in [`CRL_VALIDITY_SECS`], a cRLNumber that only grows);
//! `ocsp` answers an RFC 6960 request (good / revoked / unknown for serials it never
//! recorded), echoing the nonce. Routes: `GET /crl`, `POST /ocsp`, `GET /ocsp/<base64>`;
//! the operator page lists issued certificates with a 吊销 button; `keybridge devca
//! revoke` is the command.

use super::{DevCa, Result, bad_request, internal, not_found};
use kb_pki::Certificate;
use kb_pki::ocsp::{CertId, CertStatus};
use kb_pki::revocation::{Crl, CrlEntry, RevocationReason};
use kb_pki::time::UnixTime;
use rusqlite::{OptionalExtension, params};

/// How long a published CRL (and an OCSP answer) stays current.
pub const CRL_VALIDITY_SECS: i64 = 86_400;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS revocations (serial TEXT PRIMARY KEY, revoked_at INTEGER NOT NULL, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS crl_numbers (id INTEGER PRIMARY KEY CHECK (id = 1), last INTEGER NOT NULL);
";

const REASONS: [(&str, RevocationReason); 7] = [
    ("unspecified", RevocationReason::Unspecified),
    ("keyCompromise", RevocationReason::KeyCompromise),
    ("affiliationChanged", RevocationReason::AffiliationChanged),
    ("superseded", RevocationReason::Superseded),
    ("cessationOfOperation", RevocationReason::CessationOfOperation),
    ("certificateHold", RevocationReason::CertificateHold),
    ("privilegeWithdrawn", RevocationReason::PrivilegeWithdrawn),
];

/// A reason by its RFC 5280 name (`keyCompromise`), as the command and the page take it.
pub fn reason_by_name(name: &str) -> Option<RevocationReason> {
    REASONS.iter().find(|(n, _)| *n == name).map(|(_, r)| *r)
}

/// The reason names the dev CA accepts.
pub fn reason_names() -> Vec<&'static str> {
    REASONS.iter().map(|(n, _)| *n).collect()
}

/// A certificate the CA knows, with its revocation (for the operator page and `devca list`).
#[derive(Clone, Debug)]
pub struct IssuedCertificate {
    /// Serial (lower-case hex, as the API names it).
    pub serial: String,
    /// Subject.
    pub subject: String,
    /// notAfter.
    pub not_after: UnixTime,
    /// When and why it was revoked.
    pub revoked: Option<(UnixTime, RevocationReason)>,
}

impl DevCa {
    /// Revoke the certificate with this serial (lower-case hex). Unknown serials and a
    /// second revocation are refused (a revocation cannot be undone or re-dated).
    pub fn revoke(&self, serial: &str, reason: RevocationReason) -> Result<()> {
        let serial = serial.trim().to_ascii_lowercase();
        let conn = self.db();
        if self.certificate(&conn, &serial)?.is_none() {
            return Err(not_found(format!("no certificate with serial {serial} was issued here")));
        }
        let name =
            REASONS.iter().find(|(_, r)| *r == reason).map(|(n, _)| *n).ok_or_else(|| bad_request("unsupported reason"))?;
        let done = conn
            .execute(
                "INSERT OR IGNORE INTO revocations (serial, revoked_at, reason) VALUES (?1, ?2, ?3)",
                params![serial, self.now(), name],
            )
            .map_err(internal)?;
        if done == 0 {
            return Err(bad_request(format!("{serial} is already revoked")));
        }
        Ok(())
    }

    fn revoked(&self, serial_hex: &str) -> Result<Option<(UnixTime, RevocationReason)>> {
        let row: Option<(i64, String)> = self
            .db()
            .query_row("SELECT revoked_at, reason FROM revocations WHERE serial = ?1", [serial_hex], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(internal)?;
        Ok(row.map(|(at, reason)| (UnixTime(at), reason_by_name(&reason).unwrap_or(RevocationReason::Unspecified))))
    }

    /// Every certificate the CA knows, newest first, with its revocation.
    pub fn issued(&self) -> Result<Vec<IssuedCertificate>> {
        let rows: Vec<(String, Vec<u8>)> = {
            let conn = self.db();
            let mut st = conn.prepare("SELECT serial, der FROM certificates ORDER BY rowid DESC").map_err(internal)?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(internal)?;
            rows.collect::<rusqlite::Result<_>>().map_err(internal)?
        };
        rows.into_iter()
            .map(|(serial, der)| {
                let c = Certificate::from_der(&der).map_err(internal)?;
                Ok(IssuedCertificate { revoked: self.revoked(&serial)?, subject: c.subject(), not_after: c.not_after(), serial })
            })
            .collect()
    }

    /// A fresh CRL of everything revoked, signed by the root.
    pub fn crl(&self) -> Result<Crl> {
        let entries: Vec<(String, i64, String)> = {
            let conn = self.db();
            let mut st = conn.prepare("SELECT serial, revoked_at, reason FROM revocations ORDER BY serial").map_err(internal)?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).map_err(internal)?;
            rows.collect::<rusqlite::Result<_>>().map_err(internal)?
        };
        let entries = entries
            .into_iter()
            .map(|(serial, at, reason)| {
                let reason = reason_by_name(&reason).filter(|r| *r != RevocationReason::Unspecified);
                Ok(CrlEntry { serial: hex::decode(&serial).map_err(internal)?, at: UnixTime(at), reason })
            })
            .collect::<Result<Vec<_>>>()?;
        let number = {
            let conn = self.db();
            conn.execute("INSERT INTO crl_numbers (id, last) VALUES (1, 1) ON CONFLICT(id) DO UPDATE SET last = last + 1", [])
                .map_err(internal)?;
            conn.query_row("SELECT last FROM crl_numbers WHERE id = 1", [], |r| r.get::<_, i64>(0)).map_err(internal)?
        };
        let now = UnixTime(self.now());
        kb_pki::revocation::issue_crl(&self.root, &self.signer, &entries, now, UnixTime(now.0 + CRL_VALIDITY_SECS), number as u64)
            .map_err(internal)
    }

    /// Answer an OCSP request (DER) for certificates of this CA.
    pub fn ocsp(&self, request: &[u8]) -> Result<Vec<u8>> {
        let now = UnixTime(self.now());
        let lookup = |id: &CertId| -> Option<CertStatus> {
            let serial = hex::encode(&id.serial);
            let known = self.certificate(&self.db(), &serial).ok().flatten().is_some();
            match self.revoked(&serial) {
                Ok(Some((at, reason))) => Some(CertStatus::Revoked { at, reason: Some(reason) }),
                Ok(None) if known => Some(CertStatus::Good),
                _ => None,
            }
        };
        kb_pki::ocsp::respond(&self.root, &self.signer, request, now, UnixTime(now.0 + CRL_VALIDITY_SECS), &lookup)
            .map_err(internal)
    }
}
