//! The terminal side of the CLI: reading PINs (terminal without echo, or stdin lines with
//! `--pin-stdin`), the [`Prompter`] the device service calls, and progress bars.
//!
//! PINs are read into [`Pin`]s (zeroized on drop) and go nowhere else: never into an
//! error, a log line or `Debug` output.

use crate::output::{CliError, CliResult};
use indicatif::{ProgressBar, ProgressStyle};
use kb_service::ServiceError;
use kb_service::prompter::{ConfirmRequest, ConsentAnswer, ConsentRequest, PinRequest, Prompter, QrRequest};
use kb_types::{ErrorCode, Lang, Pin, PinKind};
use std::io::{BufRead, IsTerminal};
use std::sync::{Arc, Mutex};
use zeroize::Zeroizing;

/// Files larger than this get a progress bar (on a terminal, without `--json`).
pub(crate) const PROGRESS_THRESHOLD: u64 = 8 * 1024 * 1024;

/// Where PINs and answers come from.
pub(crate) struct Terminal {
    lang: Lang,
    pin_stdin: bool,
    yes: bool,
    /// Serialises prompts (the service may ask from a device thread).
    lock: Mutex<()>,
    /// The progress bar on screen, suspended while a prompt is shown.
    progress: Mutex<Option<ProgressBar>>,
}

fn cancelled(detail: &str) -> CliError {
    CliError::new(ErrorCode::Cancelled, detail)
}

impl Terminal {
    pub(crate) fn new(lang: Lang, pin_stdin: bool, yes: bool) -> Self {
        Terminal { lang, pin_stdin, yes, lock: Mutex::new(()), progress: Mutex::new(None) }
    }

    fn t<'a>(&self, zh: &'a str, en: &'a str) -> &'a str {
        if self.lang == Lang::En { en } else { zh }
    }

    fn suspend<T>(&self, f: impl FnOnce() -> T) -> T {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let bar = self.progress.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match bar {
            Some(b) => b.suspend(f),
            None => f(),
        }
    }

    /// Read one PIN after showing `prompt` (on stderr / the terminal). With
    /// `--pin-stdin` the next stdin line is the PIN; otherwise the terminal is read
    /// without echo, and without a terminal the answer is `Cancelled`.
    /// An empty answer cancels (it would only cost a try on the medium).
    pub(crate) fn read_pin(&self, prompt: &str) -> CliResult<Pin> {
        let pin = self.read_pin_raw(prompt)?;
        if pin.char_len() == 0 {
            return Err(cancelled(self.t("没有输入口令，已取消", "no PIN entered: cancelled")));
        }
        Ok(pin)
    }

    fn read_pin_raw(&self, prompt: &str) -> CliResult<Pin> {
        self.suspend(|| {
            if self.pin_stdin {
                eprintln!("{prompt}");
                let mut line = Zeroizing::new(String::with_capacity(256));
                let n = std::io::stdin().lock().read_line(&mut line).map_err(|e| CliError::io("stdin", e))?;
                if n == 0 {
                    return Err(cancelled(self.t("标准输入已结束，没有读到口令", "stdin ended before a PIN was read")));
                }
                let len = line.trim_end_matches(['\r', '\n']).len();
                line.truncate(len);
                return Ok(Pin::new(std::mem::take(&mut *line)));
            }
            if !std::io::stdin().is_terminal() {
                return Err(cancelled(self.t(
                    "没有终端可以输入口令；脚本中请使用 --pin-stdin（口令逐行从标准输入读取）",
                    "no terminal to enter the PIN; scripts use --pin-stdin (PINs read line by line from stdin)",
                )));
            }
            let pin = rpassword::prompt_password(prompt).map_err(|e| cancelled(&format!("terminal: {e}")))?;
            Ok(Pin::new(pin))
        })
    }

    /// Read a new PIN twice; a mismatch is `InvalidParameter`.
    pub(crate) fn read_new_pin(&self, what_zh: &str, what_en: &str) -> CliResult<Pin> {
        let first = self.read_pin(&format!("{}: ", self.t(&format!("请输入新的{what_zh}"), &format!("New {what_en}"))))?;
        let again =
            self.read_pin(&format!("{}: ", self.t(&format!("请再次输入新的{what_zh}"), &format!("Repeat the new {what_en}"))))?;
        if first != again {
            return Err(CliError::input(self.t("两次输入的新口令不一致", "the two new PINs do not match")));
        }
        Ok(first)
    }

    /// Ask yes/no; `--yes` answers yes. Without a terminal (and without `--pin-stdin`,
    /// where the next stdin line is the answer) the answer is `Cancelled`.
    pub(crate) fn ask_yes_no(&self, question: &str) -> CliResult<bool> {
        if self.yes {
            return Ok(true);
        }
        let answer = self.ask_line(&format!("{question} [y/N] "), self.pin_stdin)?;
        Ok(matches!(answer.as_deref(), Some("y" | "yes" | "是")))
    }

    /// Ask a question and read one answer line (lower-cased, trimmed): from the
    /// terminal, or from stdin when `stdin_ok` (scripts). No way to ask → cancelled.
    fn ask_line(&self, prompt: &str, stdin_ok: bool) -> CliResult<Option<String>> {
        self.suspend(|| {
            eprint!("{prompt}");
            if stdin_ok || std::io::stdin().is_terminal() {
                // Zeroized: in a script, a misplaced PIN line may land here.
                let mut line = Zeroizing::new(String::with_capacity(256));
                let n = std::io::stdin().lock().read_line(&mut line).map_err(|e| CliError::io("stdin", e))?;
                if n > 0 {
                    return Ok(Some(line.trim().to_lowercase()));
                }
            }
            eprintln!();
            Err(cancelled(self.t("没有终端可以确认；脚本中请加 --yes", "no terminal to confirm; scripts add --yes")))
        })
    }

    /// Ask whether a client may use KeyBridge: once, always or not. Only a real
    /// terminal answers (never `--yes`, never a script's stdin): granting a web page
    /// access to the user's keys is the user's decision.
    pub(crate) fn ask_consent(&self, req: &ConsentRequest) -> CliResult<ConsentAnswer> {
        let cert = req.certificate.as_deref().map(|c| format!(" ({c})")).unwrap_or_default();
        let q = if self.lang == Lang::En {
            format!(
                "{} asks to {}{cert}. Allow? [y = this time / a = always / N = no] ",
                req.client,
                self.operation_name(&req.operation)
            )
        } else {
            format!(
                "「{}」请求{}{cert}。是否允许？[y=本次允许 / a=始终允许 / N=拒绝] ",
                req.client,
                self.operation_name(&req.operation)
            )
        };
        Ok(match self.ask_line(&q, false)?.as_deref() {
            Some("y" | "yes" | "是") => ConsentAnswer::AllowOnce,
            Some("a" | "always" | "始终") => ConsentAnswer::AllowAlways,
            _ => ConsentAnswer::Deny,
        })
    }

    /// A progress bar for `total` bytes: visible only for big inputs, on a terminal,
    /// without `--json`. Prompts suspend it while they are shown.
    pub(crate) fn progress(&self, total: u64, json: bool, message: &str) -> ProgressBar {
        let show = !json && total >= PROGRESS_THRESHOLD && std::io::stderr().is_terminal();
        let bar = if show { ProgressBar::new(total) } else { ProgressBar::hidden() };
        if show {
            let style = ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}")
                .map(|s| s.progress_chars("=> "))
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_message(message.to_string());
        }
        *self.progress.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
        bar
    }

    /// The progress bar is done.
    pub(crate) fn progress_done(&self, bar: &ProgressBar) {
        bar.finish_and_clear();
        *self.progress.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn pin_kind_name(&self, kind: PinKind) -> &'static str {
        match (kind, self.lang) {
            (PinKind::User, Lang::En) => "user PIN",
            (PinKind::So, Lang::En) => "SO (administrator) PIN",
            (PinKind::User, _) => "用户口令",
            (PinKind::So, _) => "管理员口令",
        }
    }

    fn operation_name(&self, op: &str) -> String {
        let zh = match op {
            "sign" => "签名",
            "decrypt" => "解密",
            "keygen" => "生成密钥对",
            "import_certificate" => "安装证书",
            "delete_certificate" => "删除证书",
            "write_seal" => "写入印章",
            "delete_seal" => "删除印章",
            "create_container" => "创建容器",
            "delete_container" => "删除容器",
            "encrypt" => "加密",
            "verify" => "验证签名",
            "devices.list" => "查看介质列表",
            "certificates.list" => "查看证书列表",
            "certificates.get" => "读取证书",
            "subscribe" => "接收介质插拔通知",
            other => other,
        };
        if self.lang == Lang::En { op.replace('_', " ") } else { zh.to_string() }
    }
}

/// The [`Prompter`] the device service calls: the terminal (or stdin lines).
pub(crate) struct TerminalPrompter(pub(crate) Arc<Terminal>);

fn to_service(e: CliError) -> ServiceError {
    if e.code == ErrorCode::Cancelled {
        // The reason (no terminal, stdin ended) is for the user, not the error value.
        eprintln!("{}", e.detail);
        ServiceError::Cancelled
    } else {
        ServiceError::Io(e.detail)
    }
}

impl Prompter for TerminalPrompter {
    fn ask_pin(&self, req: &PinRequest, _ctx: &kb_token::OpContext) -> kb_service::Result<kb_types::Pin> {
        // A terminal read cannot be withdrawn: a PIN typed after the operation was
        // cancelled or timed out is dropped by the service and never reaches a medium.
        let t = &*self.0;
        let mut lines = Vec::new();
        if req.previous_wrong {
            lines.push(t.t("口令错误，请重新输入。", "Wrong PIN, try again.").to_string());
        }
        if req.cached_pin_rejected {
            lines.push(
                t.t("缓存的口令已失效（可能已在别处修改）。", "The cached PIN was rejected (changed elsewhere?).").to_string(),
            );
        }
        let retries = match req.retries_left {
            Some(n) if t.lang == Lang::En => format!(", {n} tries left"),
            Some(n) => format!("，剩余 {n} 次"),
            None => String::new(),
        };
        // Every PIN prompt names who asks and with which certificate (issue: a PIN typed
        // for one client must not be mistaken for another's request).
        let certificate = if req.certificate.is_empty() { String::new() } else { format!(" [{}]", req.certificate) };
        let prompt = if t.lang == Lang::En {
            format!(
                "{}{} for \"{}\" ({}) to {}{} — requested by {}{certificate}: ",
                lines.join(" "),
                t.pin_kind_name(req.kind),
                req.device_label,
                req.device_id,
                t.operation_name(&req.operation),
                retries,
                req.client,
            )
        } else {
            format!(
                "{}请输入介质「{}」({}) 的{}以{}{}（请求方：{}{certificate}）：",
                lines.join(""),
                req.device_label,
                req.device_id,
                t.pin_kind_name(req.kind),
                t.operation_name(&req.operation),
                retries,
                req.client,
            )
        };
        // No further PIN after a wrong one (stdin ended) is a cancellation here; the
        // device service turns it into the wrong PIN with its tries left.
        t.read_pin(&prompt).map_err(to_service)
    }

    fn consent(&self, req: &ConsentRequest) -> kb_service::Result<ConsentAnswer> {
        self.0.ask_consent(req).map_err(to_service)
    }

    fn confirm(&self, req: &ConfirmRequest) -> kb_service::Result<bool> {
        self.0.ask_yes_no(&format!("{}: {}", req.title, req.message)).map_err(to_service)
    }

    fn show_qr(&self, req: &QrRequest) -> kb_service::Result<()> {
        let t = &*self.0;
        t.suspend(|| {
            eprintln!(
                "{} — {}\n{}\n{}",
                req.title,
                t.t("二维码内容（终端暂以文本显示）", "QR code payload (shown as text in the terminal for now)"),
                req.payload,
                if t.lang == Lang::En {
                    format!("valid for {} minutes", req.expires_in.as_secs() / 60)
                } else {
                    format!("{} 分钟内有效", req.expires_in.as_secs() / 60)
                }
            );
        });
        Ok(())
    }

    fn notify(&self, message: &str) {
        self.0.suspend(|| eprintln!("{message}"));
    }
}

/// A QR code drawn for a terminal (two rows per character line, error correction M), or
/// `None` if the payload does not fit one: the WeChat binding QR and the phone pairing QR.
pub(crate) fn terminal_qr(payload: &str) -> Option<String> {
    use qrcode::render::unicode::Dense1x2;
    let code = qrcode::QrCode::with_error_correction_level(payload.as_bytes(), qrcode::EcLevel::M).ok()?;
    Some(code.render::<Dense1x2>().quiet_zone(true).build())
}
