//! File-type keys and key pairs on a medium: `filekey create|keygen|csr|import-cert|
//! delete-cert`, and `demo` (a labelled demo key with an SM2 dual-certificate pair from
//! a local demo CA).

use crate::ctx::{App, CLIENT, Devices, Home, Usage, write_atomic};
use crate::output::{CliError, CliResult, pad};
use crate::term::TerminalPrompter;
use clap::{Args, Subcommand, ValueEnum};
use kb_filekey::{CreateOptions, FileToken, FileTransport, KdfParams};
use kb_pki::csr::CertificationRequest;
use kb_pki::time::UnixTime;
use kb_types::{Algorithm, DeviceId, ErrorCode, KeyUsage, TransportKind};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args)]
pub(crate) struct FilekeyArgs {
    #[command(subcommand)]
    cmd: FilekeyCmd,
}

/// Key algorithms on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum KeyAlg {
    /// SM2 (国密).
    Sm2,
    /// RSA 2048.
    Rsa2048,
    /// ECDSA on P-256.
    EcdsaP256,
}

impl KeyAlg {
    fn algorithm(self) -> Algorithm {
        match self {
            KeyAlg::Sm2 => Algorithm::Sm2,
            KeyAlg::Rsa2048 => Algorithm::Rsa { bits: 2048 },
            KeyAlg::EcdsaP256 => Algorithm::EcdsaP256,
        }
    }
}

#[derive(Subcommand)]
enum FilekeyCmd {
    /// Create a file-type key <keys>/<NAME>.kbkey (asks for the new user PIN and SO PIN).
    Create {
        /// File name without extension; the device id becomes file:NAME.
        #[arg(long)]
        name: String,
        /// Label shown to people (default: the name).
        #[arg(long)]
        label: Option<String>,
    },
    /// Generate a key pair on the medium (replaces the slot's key pair and certificate).
    Keygen {
        #[command(flatten)]
        slot: SlotArgs,
        /// Algorithm.
        #[arg(long, value_enum, default_value_t = KeyAlg::Sm2)]
        alg: KeyAlg,
    },
    /// Build a certificate request (PKCS#10), signed on the medium by the slot's key.
    Csr {
        #[command(flatten)]
        slot: SlotArgs,
        /// Subject, as certificates show it (most specific first: "CN=张三, O=某某公司, C=CN",
        /// so a subject copied from `keybridge cert show` can be pasted) or most general
        /// first ("C=CN, O=某某公司, CN=张三"). Either way the request's subject is encoded
        /// most general first: the order is told from the first and last attributes.
        #[arg(long)]
        subject: String,
        /// Where to write the request.
        #[arg(long)]
        out: PathBuf,
        /// PEM instead of DER.
        #[arg(long)]
        pem: bool,
    },
    /// Install a certificate for a slot (it must match the slot's key pair).
    ImportCert {
        #[command(flatten)]
        slot: SlotArgs,
        /// The certificate (DER, PEM or base64).
        #[arg(long)]
        cert: PathBuf,
    },
    /// Remove a slot's certificate (the key pair stays). Asks first unless --yes.
    DeleteCert {
        #[command(flatten)]
        slot: SlotArgs,
    },
}

/// The key pair a filekey command works on; all three are needed to change a medium
/// (except `--device` when only one medium is present).
#[derive(Args)]
struct SlotArgs {
    /// Device id.
    #[arg(long, value_name = "ID")]
    device: Option<String>,
    /// Container (`keygen` creates it if missing).
    #[arg(long)]
    container: String,
    /// Which key pair.
    #[arg(long, value_enum)]
    usage: Usage,
}

fn kdf(app: &App) -> KdfParams {
    if app.g.weak_kdf_for_tests { KdfParams::weak_for_tests() } else { KdfParams::DEFAULT }
}

/// `<key dir>/<name>.kbkey` for a well-formed name.
fn key_path(home: &Home, name: &str) -> CliResult<(DeviceId, PathBuf)> {
    let id = DeviceId::new(TransportKind::File, name);
    let path = FileTransport::new(&home.key_dir).path_of(&id).ok_or_else(|| {
        CliError::input(format!("{name:?} cannot be a file key name (no slashes, control characters or leading dot)"))
    })?;
    Ok((id, path))
}

/// `keybridge filekey …`.
pub(crate) fn filekey(app: &App, a: FilekeyArgs) -> CliResult {
    let o = &app.out;
    match a.cmd {
        FilekeyCmd::Create { name, label } => {
            let home = app.home()?;
            let (id, path) = key_path(&home, &name)?;
            home.ensure_key_dir()?;
            if path.exists() {
                return Err(CliError::new(ErrorCode::AlreadyExists, format!("{} exists", path.display())));
            }
            let user = app.term.read_new_pin("用户口令", "user PIN")?;
            let so = app.term.read_new_pin("管理员口令", "SO PIN")?;
            let label = label.unwrap_or_else(|| name.clone());
            let opts = CreateOptions { kdf: kdf(app), pins_are_default: false, ..CreateOptions::default() };
            let token = FileToken::create(&path, &label, &user, &so, opts)?;
            tracing::info!(device = %id, "file key created");
            #[derive(Serialize)]
            struct Created {
                device: DeviceId,
                path: String,
                label: String,
                serial: String,
            }
            let info = kb_token::Token::info(&token);
            let c = Created { device: id, path: path.display().to_string(), label, serial: info.serial };
            o.show(&c, || {
                format!(
                    "{} {} ({}) → {}\n  {} {}",
                    o.t("已创建文件型介质", "file key created"),
                    c.device,
                    c.label,
                    c.path,
                    o.t("序列号", "serial"),
                    c.serial
                )
            });
            Ok(())
        }
        FilekeyCmd::Keygen { slot: SlotArgs { device, container, usage }, alg } => {
            let d = app.devices()?;
            let dev = d.select(device.as_deref())?;
            let usage = usage.key_usage();
            let containers = d.manager.containers(&dev.id, CLIENT)?;
            let new_container = match containers.iter().find(|c| c.name == container) {
                None => true,
                Some(c) => {
                    if c.slot(usage).is_some_and(|s| s.certificate.is_some()) {
                        let q = o.t(
                            &format!("容器 {container} 的{usage}密钥对已有证书；生成新密钥对会删除该证书。继续？"),
                            &format!("The {usage} key pair in container {container} has a certificate; a new key pair removes it. Continue?"),
                        )
                        .to_string();
                        if !app.term.ask_yes_no(&q)? {
                            return Err(CliError::new(ErrorCode::Cancelled, "key generation not confirmed"));
                        }
                    }
                    false
                }
            };
            let public = if new_container {
                // One operation on the medium (one PIN) for both steps.
                d.manager.generate_key_pair_in_new_container(&dev.id, &container, usage, alg.algorithm(), CLIENT)?
            } else {
                d.manager.generate_key_pair(&dev.id, &container, usage, alg.algorithm(), CLIENT)?
            };
            tracing::info!(device = %dev.id, container = %container, usage = %usage, "key pair generated");
            #[derive(Serialize)]
            struct Generated {
                device: DeviceId,
                container: String,
                usage: KeyUsage,
                algorithm: Algorithm,
                public_key_spki: String,
            }
            let g = Generated {
                device: dev.id.clone(),
                container,
                usage,
                algorithm: public.algorithm(),
                public_key_spki: hex::encode(&public.to_spki_der()?),
            };
            o.show(&g, || {
                format!(
                    "{} {} / {} / {} ({})",
                    o.t("已生成密钥对", "key pair generated"),
                    g.device,
                    g.container,
                    g.usage,
                    g.algorithm
                )
            });
            Ok(())
        }
        FilekeyCmd::Csr { slot: SlotArgs { device, container, usage }, subject, out, pem } => {
            let d = app.devices()?;
            let dev = d.select(device.as_deref())?;
            let container = d.container(&dev.id, Some(&container))?;
            let signer = d.manager.signer(&dev.id, &container, usage.key_usage(), CLIENT)?;
            let subject = kb_pki::name::in_encoding_order(&subject);
            let der = kb_pki::csr::build(&subject, &signer, Vec::new()).map_err(|e| signer.service_error(e))?;
            let req = CertificationRequest::from_der(&der)?;
            if pem {
                write_atomic(&out, req.to_pem().as_bytes())?;
            } else {
                write_atomic(&out, &der)?;
            }
            #[derive(Serialize)]
            struct Requested {
                out: String,
                subject: String,
                device: DeviceId,
                container: String,
                usage: KeyUsage,
            }
            let r = Requested {
                out: out.display().to_string(),
                subject: req.subject(),
                device: dev.id.clone(),
                container,
                usage: usage.key_usage(),
            };
            o.show(&r, || format!("{} {} → {}", o.t("已生成证书请求", "certificate request written"), r.subject, r.out));
            Ok(())
        }
        FilekeyCmd::ImportCert { slot: SlotArgs { device, container, usage }, cert } => {
            let c = crate::input::read_certificate(&cert)?;
            let d = app.devices()?;
            let dev = d.select(device.as_deref())?;
            let container = d.container(&dev.id, Some(&container))?;
            d.manager.import_certificate(&dev.id, &container, usage.key_usage(), c.der(), CLIENT)?;
            let info = c.info(UnixTime::now(), d.home.warn_days());
            #[derive(Serialize)]
            struct Imported {
                device: DeviceId,
                container: String,
                usage: KeyUsage,
                subject: String,
                serial: String,
                status: kb_pki::cert::ValidityStatus,
            }
            let i = Imported {
                device: dev.id.clone(),
                container,
                usage: usage.key_usage(),
                subject: info.subject,
                serial: info.serial,
                status: info.status,
            };
            o.show(&i, || {
                format!(
                    "{} {} (SN {}) → {} / {} [{}]",
                    o.t("已安装证书", "certificate installed"),
                    i.subject,
                    i.serial,
                    i.device,
                    i.container,
                    crate::device_cmd::status_text(o.lang(), i.status)
                )
            });
            Ok(())
        }
        FilekeyCmd::DeleteCert { slot: SlotArgs { device, container, usage } } => {
            let d = app.devices()?;
            let dev = d.select(device.as_deref())?;
            let container = d.container(&dev.id, Some(&container))?;
            let usage = usage.key_usage();
            let cert = d
                .manager
                .certificate(&dev.id, &container, usage, CLIENT)?
                .ok_or_else(|| crate::device_cmd::no_certificate(&dev.id, &container, usage))?;
            let q = o
                .t(
                    &format!("删除 {} / {container} 的{usage}证书「{}」？密钥对保留。", dev.id, cert.subject()),
                    &format!(
                        "Delete the {usage} certificate \"{}\" of {} / {container}? The key pair stays.",
                        cert.subject(),
                        dev.id
                    ),
                )
                .to_string();
            if !app.term.ask_yes_no(&q)? {
                return Err(CliError::new(ErrorCode::Cancelled, "deletion not confirmed"));
            }
            d.manager.delete_certificate(&dev.id, &container, usage, CLIENT)?;
            #[derive(Serialize)]
            struct Deleted {
                device: DeviceId,
                container: String,
                usage: KeyUsage,
                deleted: String,
            }
            let x = Deleted { device: dev.id.clone(), container, usage, deleted: cert.subject() };
            o.show(&x, || format!("{} {}", o.t("已删除证书", "certificate deleted"), x.deleted));
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------
// demo
// ---------------------------------------------------------------------------------------

use kb_service::demo::{DEMO_CONTAINER, DEMO_LABEL, DEMO_SO_PIN, DEMO_USER_PIN};

#[derive(Serialize)]
struct DemoCert {
    usage: KeyUsage,
    subject: String,
    serial: String,
    not_after: String,
    thumbprint_sha1: String,
}

/// `keybridge demo`.
pub(crate) fn demo(app: &App) -> CliResult {
    let o = &app.out;
    let home = app.home()?;
    home.ensure_key_dir()?;
    let demo = kb_service::demo::ensure_demo_key(
        &home.paths,
        &home.key_dir,
        kdf(app),
        Arc::new(TerminalPrompter(Arc::clone(&app.term))),
    )?;
    let (id, path, created, ca_created, completed) = (demo.id, demo.path, demo.created, demo.ca_created, demo.completed);
    let d = Devices::open(home, Arc::new(TerminalPrompter(Arc::clone(&app.term))))?;
    let mut certs = Vec::new();
    for usage in [KeyUsage::Sign, KeyUsage::Encrypt] {
        if let Some(c) = d.manager.certificate(&id, DEMO_CONTAINER, usage, CLIENT)? {
            certs.push(DemoCert {
                usage,
                subject: c.subject(),
                serial: c.serial_hex(),
                not_after: c.not_after().to_rfc3339(),
                thumbprint_sha1: c.thumbprint(kb_types::HashAlgorithm::Sha1),
            });
        }
    }
    let root_pem = demo.root_pem;
    let mut prefix = String::from("keybridge");
    if let Some(h) = &app.g.home {
        prefix.push_str(&format!(" --home {}", shell_word(&h.display().to_string())));
    }
    if let Some(k) = &app.g.keys {
        prefix.push_str(&format!(" --keys {}", shell_word(&k.display().to_string())));
    }
    let root_arg = shell_word(&root_pem.display().to_string());
    let next = vec![
        format!("{prefix} devices"),
        format!("{prefix} certs"),
        "echo 投标文件 > bid.txt".to_string(),
        format!("{prefix} sign --device {id} --in bid.txt --out bid.p7s --format cms-detached"),
        format!("{prefix} verify --sig bid.p7s --in bid.txt --ca {root_arg}"),
        format!("{prefix} encrypt --to-device --device {id} --in bid.txt --out bid.p7e"),
        format!("{prefix} decrypt --device {id} --in bid.p7e --out bid.opened.txt"),
        format!("{prefix} audit --days 1"),
    ];
    #[derive(Serialize)]
    struct Demo<'a> {
        created: bool,
        completed: &'a [String],
        device: &'a DeviceId,
        label: &'static str,
        key_file: String,
        demo_only: bool,
        user_pin: &'static str,
        so_pin: &'static str,
        demo_ca: String,
        demo_ca_created: bool,
        container: &'static str,
        certificates: &'a [DemoCert],
        next: &'a [String],
    }
    let v = Demo {
        created,
        completed: &completed,
        device: &id,
        label: DEMO_LABEL,
        key_file: path.display().to_string(),
        demo_only: true,
        user_pin: DEMO_USER_PIN,
        so_pin: DEMO_SO_PIN,
        demo_ca: root_pem.display().to_string(),
        demo_ca_created: ca_created,
        container: DEMO_CONTAINER,
        certificates: &certs,
        next: &next,
    };
    o.show(&v, || {
        let mut s = String::new();
        s.push_str(&if created {
            format!("{} {} ({})\n", o.t("已创建演示介质", "Demo key created:"), id, DEMO_LABEL)
        } else {
            format!("{} {} ({})\n", o.t("演示介质已存在", "Demo key already present:"), id, DEMO_LABEL)
        });
        if !completed.is_empty() && !created {
            s.push_str(&format!("  {} {}\n", o.t("已补全：", "completed:"), completed.join(", ")));
        }
        s.push_str(&format!("  {}{}\n", pad(o.t("文件", "file"), 16), v.key_file));
        s.push_str(&format!("  {}{}\n", pad(o.t("演示 CA 根证书", "demo CA root"), 16), v.demo_ca));
        for c in &certs {
            s.push_str(&format!(
                "  {}{}  SN {}  → {}\n",
                pad(if c.usage == KeyUsage::Encrypt { o.t("加密证书", "encryption") } else { o.t("签名证书", "signing") }, 16),
                c.subject,
                c.serial,
                c.not_after
            ));
        }
        s.push('\n');
        s.push_str(o.t(
            &format!(
                "仅供演示 —— 演示口令公开，切勿用于真实业务：\n  用户口令 {DEMO_USER_PIN}    管理员口令 {DEMO_SO_PIN}\n"
            ),
            &format!(
                "DEMO ONLY — these PINs are public; never use this key for real work:\n  user PIN {DEMO_USER_PIN}    SO PIN {DEMO_SO_PIN}\n"
            ),
        ));
        s.push('\n');
        s.push_str(o.t("接下来可以试试：\n", "Try next:\n"));
        for n in &next {
            s.push_str(&format!("  {n}\n"));
        }
        s.trim_end().to_string()
    });
    Ok(())
}

/// Quote a path for a shell command line when it needs it.
fn shell_word(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+:=@,".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
