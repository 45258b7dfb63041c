//! A small CA run by the OpenSSL 3 command line (`openssl ca` with its index file), for the
//! revocation tests: RSA-2048, ECDSA P-256 or SM2 (signed with the GM/T ID through
//! `-sigopt distid:1234567812345678`). It issues leaves, revokes them with a reason, makes
//! CRLs (`-gencrl`) and answers OCSP requests (`openssl ocsp -index …`), all offline.

use crate::{OpenSsl, path_in, read, write};
use kb_pki::Certificate;
use std::path::{Path, PathBuf};

/// The GM/T default SM2 ID as an OpenSSL option value.
pub const DISTID: &str = "distid:1234567812345678";

/// The key types a CA can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// RSA-2048 with SHA-256.
    Rsa,
    /// ECDSA P-256 with SHA-256.
    Ecdsa,
    /// SM2 with SM3 and the GM/T ID.
    Sm2,
}

impl Kind {
    /// All three.
    pub const ALL: [Kind; 3] = [Kind::Rsa, Kind::Ecdsa, Kind::Sm2];

    fn md(self) -> &'static str {
        if self == Kind::Sm2 { "sm3" } else { "sha256" }
    }

    /// `-sigopt distid:…` for SM2, nothing otherwise.
    pub fn sigopt(self) -> &'static [&'static str] {
        if self == Kind::Sm2 { &["-sigopt", DISTID] } else { &[] }
    }
}

/// An OpenSSL CA in a directory of its own.
pub struct OpensslCa {
    /// The OpenSSL CLI.
    pub o: OpenSsl,
    /// Its directory.
    pub dir: PathBuf,
    /// Its key type.
    pub kind: Kind,
    cnf: String,
    /// Its certificate.
    pub cert: Certificate,
}

impl OpensslCa {
    /// A new self-signed CA (keyCertSign, cRLSign) in `dir`.
    pub fn new(o: &OpenSsl, dir: &Path, kind: Kind) -> Self {
        std::fs::create_dir_all(dir.join("newcerts")).unwrap();
        std::fs::write(dir.join("index.txt"), "").unwrap();
        std::fs::write(dir.join("crlnumber"), "1000\n").unwrap();
        let d = dir.display();
        let md = kind.md();
        let cnf = write(
            dir,
            "ca.cnf",
            format!(
                "[ca]\ndefault_ca = kb\n[kb]\ndir = {d}\ndatabase = {d}/index.txt\nnew_certs_dir = {d}/newcerts\n\
                 certificate = {d}/ca.pem\nprivate_key = {d}/ca.key\ncrlnumber = {d}/crlnumber\nrand_serial = yes\n\
                 default_md = {md}\ndefault_days = 30\ndefault_crl_days = 7\npolicy = any\nunique_subject = no\n\
                 copy_extensions = none\nx509_extensions = leaf\n[any]\ncommonName = supplied\n\
                 [leaf]\nbasicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature\n\
                 [responder]\nbasicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature\n\
                 extendedKeyUsage = OCSPSigning\n\
                 [req]\ndistinguished_name = dn\n[dn]\n[root]\nbasicConstraints = critical, CA:TRUE\n\
                 keyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\n"
            ),
        );
        let (key, pem, md_flag) = (path_in(dir, "ca.key"), path_in(dir, "ca.pem"), format!("-{md}"));
        newkey(o, kind, &key);
        let mut args = vec!["req", "-config", &cnf, "-new", "-x509", "-key", &key, "-out", &pem, "-days", "30"];
        args.extend(["-subj", "/C=CN/O=OpenSSL Revocation/CN=OpenSSL CA", "-extensions", "root", &md_flag]);
        args.extend(kind.sigopt());
        o.ok(&args);
        let cert = Certificate::from_any(&read(&pem)).unwrap();
        OpensslCa { o: o.clone(), dir: dir.to_path_buf(), kind, cnf, cert }
    }

    /// A file in the CA's directory.
    pub fn path(&self, name: &str) -> String {
        path_in(&self.dir, name)
    }

    /// Issue `<name>.pem` (key `<name>.key`) with the extensions section `ext` (`leaf` or
    /// `responder`).
    pub fn issue(&self, name: &str, ext: &str) -> Certificate {
        newkey(&self.o, self.kind, &self.path(&format!("{name}.key")));
        let (key, csr, pem) =
            (self.path(&format!("{name}.key")), self.path(&format!("{name}.csr")), self.path(&format!("{name}.pem")));
        let (subj, md_flag) = (format!("/CN={name}"), format!("-{}", self.kind.md()));
        let mut req = vec!["req", "-config", &self.cnf, "-new", "-key", &key, "-subj", &subj, "-out", &csr, &md_flag];
        req.extend(self.kind.sigopt());
        self.o.ok(&req);
        let mut sign = vec!["ca", "-config", &self.cnf, "-batch", "-notext", "-extensions", ext, "-in", &csr, "-out", &pem];
        sign.extend(self.kind.sigopt());
        if self.kind == Kind::Sm2 {
            sign.extend(["-vfyopt", DISTID]);
        }
        self.o.ok(&sign);
        Certificate::from_any(&read(&pem)).unwrap()
    }

    /// Revoke `<name>.pem` with an OpenSSL reason name (`keyCompromise`).
    pub fn revoke(&self, name: &str, reason: &str) {
        self.o.ok(&["ca", "-config", &self.cnf, "-revoke", &self.path(&format!("{name}.pem")), "-crl_reason", reason]);
    }

    /// A CRL of everything revoked so far (PEM path).
    pub fn gencrl(&self) -> String {
        let out = self.path("crl.pem");
        let mut args = vec!["ca", "-config", &self.cnf, "-gencrl", "-out", &out];
        args.extend(self.kind.sigopt());
        self.o.ok(&args);
        out
    }

    /// Answer the DER request at `req` as `openssl ocsp` does, signed by `signer`
    /// (`ca` or a responder issued by [`issue`](Self::issue)); the response's path.
    pub fn answer(&self, req: &str, signer: &str) -> String {
        let out = self.path("resp.der");
        let (rsigner, rkey, md_flag) = (self.path(&format!("{signer}.pem")), self.path(&format!("{signer}.key")), self.kind.md());
        let (index, ca) = (self.path("index.txt"), self.path("ca.pem"));
        let mut args =
            vec!["ocsp", "-index", &index, "-CA", &ca, "-rsigner", &rsigner, "-rkey", &rkey, "-reqin", req, "-respout", &out];
        args.extend(["-ndays", "1", "-rmd", md_flag]);
        if self.kind == Kind::Sm2 {
            args.extend(["-rsigopt", DISTID]);
        }
        self.o.ok(&args);
        out
    }
}

fn newkey(o: &OpenSsl, kind: Kind, out: &str) {
    match kind {
        Kind::Rsa => o.ok(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", out]),
        Kind::Ecdsa => o.ok(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", out]),
        Kind::Sm2 => o.ok(&["genpkey", "-algorithm", "SM2", "-out", out]),
    };
}

/// The signed part and the signature of a DER `SEQUENCE { tbs, algorithm, BIT STRING }`
/// (a CRL, a BasicOCSPResponse), found by `openssl asn1parse` — not by KeyBridge's parser.
/// `strparse`: the offset of an OCTET STRING in the file that holds the structure (an OCSP
/// response's ResponseBytes).
pub fn signed_parts(o: &OpenSsl, path: &str, strparse: Option<usize>) -> (Vec<u8>, Vec<u8>) {
    let off = strparse.map(|s| s.to_string());
    let mut args = vec!["asn1parse", "-inform", "DER", "-in", path];
    if let Some(off) = &off {
        args.extend(["-strparse", off]);
    }
    let listing = String::from_utf8(o.ok(&args)).unwrap();
    let der = match &off {
        None => read(path),
        Some(off) => {
            let inner = format!("{path}.inner");
            o.ok(&["asn1parse", "-inform", "DER", "-in", path, "-strparse", off, "-noout", "-out", &inner]);
            read(&inner)
        }
    };
    // Lines like "    4:d=1  hl=4 l= 345 cons: SEQUENCE": depth 1 = tbs, algorithm, signature.
    let field = |l: &str, key: &str, nth: usize| -> usize {
        l.split(key).nth(nth).unwrap().split_whitespace().next().unwrap().parse().unwrap()
    };
    let top: Vec<(usize, usize, usize)> = listing
        .lines()
        .filter(|l| l.contains("d=1"))
        .map(|l| (l.split(':').next().unwrap().trim().parse().unwrap(), field(l, "hl=", 1), field(l, "l=", 2)))
        .collect();
    assert!(top.len() >= 3, "{listing}");
    let ((t_off, t_hl, t_len), (s_off, s_hl, s_len)) = (top[0], top[2]);
    assert_eq!(der[s_off + s_hl], 0, "unused bits of the signature");
    (der[t_off..t_off + t_hl + t_len].to_vec(), der[s_off + s_hl + 1..s_off + s_hl + s_len].to_vec())
}

/// OpenSSL verifies an SM2 signature `sig` over `tbs` by the key of the certificate at
/// `cert_pem`, with the GM/T ID (the primitive path, where OpenSSL 3.0's CRL and OCSP
/// commands would use the empty ID); and refuses it over a changed `tbs`.
pub fn sm2_verifies(o: &OpenSsl, dir: &Path, cert_pem: &str, tbs: &[u8], sig: &[u8]) {
    let (tbs_path, sig_path, pub_path) = (write(dir, "tbs.der", tbs), write(dir, "sig.der", sig), path_in(dir, "pub.pem"));
    o.ok(&["x509", "-in", cert_pem, "-pubkey", "-noout", "-out", &pub_path]);
    let verify = |tbs: &str| {
        let args = [
            "pkeyutl", "-verify", "-rawin", "-digest", "sm3", "-pubin", "-inkey", &pub_path, "-pkeyopt", DISTID, "-in", tbs,
            "-sigfile", &sig_path,
        ];
        let out = o.run(&args, b"");
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Signature Verified Successfully")
    };
    assert!(verify(&tbs_path), "OpenSSL does not verify the SM2 signature");
    let mut bad = tbs.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(!verify(&write(dir, "bad.der", &bad)), "OpenSSL must refuse a changed signed part");
}
