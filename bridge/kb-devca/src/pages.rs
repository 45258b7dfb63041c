//! Phone-sized, server-rendered HTML standing in for the WeChat side (binding
//! confirmation, renewal application, simulated payment) and the operator's page.

use crate::ca::{ApplicationRecord, BindingView};
use kb_ca::api;
use kb_ca::http::percent_encode;
use kb_pki::Certificate;
use kb_pki::time::UnixTime;

/// Escape text for HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// A whole page.
pub fn page(title: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{t}</title>
<style>
body{{font-family:system-ui,"PingFang SC","Noto Sans CJK SC",sans-serif;margin:0;background:#f2f2f2;color:#222;max-width:480px;margin:auto}}
header{{background:#07c160;color:#fff;padding:14px 16px;font-size:18px}}
.dev{{background:#fff3cd;color:#7a5a00;padding:6px 16px;font-size:12px}}
.card{{background:#fff;margin:12px;padding:12px 16px;border-radius:8px}}
dl{{display:grid;grid-template-columns:6.5em 1fr;gap:6px 8px;margin:0}} dt{{color:#888}} dd{{margin:0;word-break:break-all}}
button,.btn{{display:block;width:100%;box-sizing:border-box;padding:12px;margin:8px 0;border:0;border-radius:6px;font-size:16px;text-align:center;text-decoration:none}}
.primary{{background:#07c160;color:#fff}} .secondary{{background:#e5e5e5;color:#222}}
.error{{color:#c00}} label{{display:block;margin:8px 0}}
</style></head><body>
<header>{t}</header><div class="dev">KeyBridge 开发 CA（仅供开发测试，不是正式 CA）</div>
{body}
</body></html>"#,
        t = esc(title)
    )
}

/// A date as 证书有效期至 shows it.
pub fn date(t: UnixTime) -> String {
    t.to_rfc3339().get(..10).unwrap_or_default().to_string()
}

fn cert_fields(service: &str, medium: &str, c: &Certificate) -> String {
    format!(
        "<dl><dt>介质编号</dt><dd class=\"medium\">{}</dd><dt>证书用户</dt><dd class=\"user\">{}</dd>\
         <dt>服务名称</dt><dd class=\"service\">{}</dd><dt>证书有效期至</dt><dd class=\"not-after\">{}</dd></dl>",
        esc(medium),
        esc(&c.subject_cn().unwrap_or_else(|| c.subject())),
        esc(service),
        date(c.not_after())
    )
}

/// The binding confirmation page.
pub fn binding(service: &str, token: &str, view: &BindingView) -> String {
    let certs: String = view
        .certificates
        .iter()
        .map(|b| format!("<div class=\"card cert\">{}</div>", cert_fields(service, &b.medium_serial, &b.certificate)))
        .collect();
    page(
        "证书绑定",
        &format!(
            "{certs}<div class=\"card\"><p>确认将以上证书绑定到本微信？（剩余有效时间 {m}分{s:02}秒）</p>\
             <form method=\"post\" action=\"/m/bind\"><input type=\"hidden\" name=\"token\" value=\"{t}\">\
             <button class=\"primary\" name=\"action\" value=\"confirm\" id=\"confirm\">确认绑定</button>\
             <button class=\"secondary\" name=\"action\" value=\"cancel\" id=\"cancel\">取消</button></form></div>",
            m = view.expires_in / 60,
            s = view.expires_in % 60,
            t = esc(token)
        ),
    )
}

/// After 确认绑定: the bound certificates with links to apply for renewal.
pub fn phone_home(service: &str, phone_key: &str, certs: &[Certificate], now: UnixTime) -> String {
    let list: String = certs
        .iter()
        .map(|c| {
            let days = c.days_left(now);
            let flag = if days < 0 { format!("已过期 {} 天", -days) } else { format!("剩余 {days} 天") };
            format!(
                "<div class=\"card cert\">{}<p>{flag}</p><a class=\"btn primary renew\" href=\"/m/renew?k={}&amp;serial={}\">申请续期</a></div>",
                cert_fields(service, "", c),
                percent_encode(phone_key),
                percent_encode(&api::serial_of(c))
            )
        })
        .collect();
    page("我的证书", &format!("<div class=\"card\"><p id=\"bound\">绑定成功</p></div>{list}"))
}

/// The renewal application form (临期 or 过期).
pub fn renew_form(service: &str, phone_key: &str, c: &Certificate, expired: bool) -> String {
    let attachment = if expired {
        "<p>证书已过期（过期续期），请上传证明材料：</p><label>附件 <input type=\"file\" name=\"attachment\" required></label>"
    } else {
        "<p>证书即将到期（临期续期）。</p>"
    };
    page(
        "证书续期申请",
        &format!(
            "<div class=\"card\">{fields}</div><div class=\"card\"><form method=\"post\" action=\"/m/renew\" enctype=\"multipart/form-data\">\
             <input type=\"hidden\" name=\"k\" value=\"{k}\"><input type=\"hidden\" name=\"serial\" value=\"{s}\">\
             {attachment}\
             <label>续期年限 <select name=\"years\"><option value=\"1\">1 年</option><option value=\"2\">2 年</option><option value=\"3\">3 年</option></select></label>\
             <label>办理方式 <select name=\"kind\"><option value=\"renew\">续期（保留原密钥）</option><option value=\"rekey\">变更/补发（新密钥）</option></select></label>\
             <label><input type=\"checkbox\" name=\"consent\" value=\"yes\" required> 本人确认申请续期（意愿表达）</label>\
             <button class=\"primary\" id=\"apply\">下一步：支付</button></form></div>",
            fields = cert_fields(service, "", c),
            k = esc(phone_key),
            s = esc(&api::serial_of(c))
        ),
    )
}

/// The simulated payment page.
pub fn payment(phone_key: &str, rec: &ApplicationRecord) -> String {
    let price = 200 * rec.application.years;
    page(
        "支付",
        &format!(
            "<div class=\"card\"><p>申请编号 <span id=\"application\">{id}</span></p><p>应付金额 ¥{price}.00（模拟支付）</p>\
             <form method=\"post\" action=\"/m/pay\"><input type=\"hidden\" name=\"k\" value=\"{k}\">\
             <input type=\"hidden\" name=\"application\" value=\"{id}\"><button class=\"primary\" id=\"pay\">模拟支付</button></form></div>",
            id = esc(&rec.application.id),
            k = esc(phone_key)
        ),
    )
}

/// After payment.
pub fn paid(rec: &ApplicationRecord) -> String {
    page(
        "已提交",
        &format!(
            "<div class=\"card\"><p id=\"paid\">支付成功，续期申请 {} 已提交，等待审核。</p></div>",
            esc(&rec.application.id)
        ),
    )
}

/// The operator's page: applications waiting for a decision, then issued certificates.
pub fn operator(key: &str, waiting: &[ApplicationRecord], issued_certs: &[crate::ca::IssuedCertificate]) -> String {
    let rows: String = waiting
        .iter()
        .map(|r| {
            format!(
                "<div class=\"card app\"><p>{id} · 证书 {s} · {kind} · {y} 年 · {e}{att}</p>\
                 <form method=\"post\" action=\"/op/decide\"><input type=\"hidden\" name=\"key\" value=\"{k}\">\
                 <input type=\"hidden\" name=\"application\" value=\"{id}\">\
                 <button class=\"primary\" name=\"action\" value=\"approve\">审核通过</button>\
                 <label>驳回原因 <input name=\"reason\"></label><button class=\"secondary\" name=\"action\" value=\"reject\">驳回</button></form></div>",
                id = esc(&r.application.id),
                s = esc(&r.serial),
                kind = if r.application.kind == api::RenewalKind::Rekey { "变更/补发" } else { "续期" },
                y = r.application.years,
                e = if r.application.expired { "过期" } else { "临期" },
                att = r.attachment_name.as_deref().map(|n| format!(" · 附件 {}", esc(n))).unwrap_or_default(),
                k = esc(key)
            )
        })
        .collect();
    let rows = if rows.is_empty() { "<div class=\"card\"><p>没有待审核的申请。</p></div>".to_string() } else { rows };
    page("续期审核（运营）", &format!("{rows}{}", issued(key, issued_certs)))
}

/// The operator's list of issued certificates, each with 吊销 (revoke) and a reason.
fn issued(key: &str, certs: &[crate::ca::IssuedCertificate]) -> String {
    let reasons: String = crate::ca::reason_names().iter().map(|n| format!("<option value=\"{n}\">{n}</option>")).collect();
    let rows: String = certs
        .iter()
        .map(|c| {
            let state = match c.revoked {
                Some((at, reason)) => format!("<p class=\"revoked\">已吊销 {} · {}</p>", date(at), reason.rfc_name()),
                None => format!(
                    "<form method=\"post\" action=\"/op/revoke\"><input type=\"hidden\" name=\"key\" value=\"{k}\">\
                     <input type=\"hidden\" name=\"serial\" value=\"{s}\"><label>原因 <select name=\"reason\">{reasons}</select></label>\
                     <button class=\"secondary\">吊销</button></form>",
                    k = esc(key),
                    s = esc(&c.serial)
                ),
            };
            format!("<div class=\"card cert\"><p>{} · 证书 {} · 有效期至 {}</p>{state}</div>", esc(&c.subject), esc(&c.serial), date(c.not_after))
        })
        .collect();
    format!("<h2>已签发的证书（吊销后不可恢复）</h2>{rows}")
}

/// A refusal shown on the phone.
pub fn error(message_zh: &str, detail: &str) -> String {
    page(
        "无法完成",
        &format!("<div class=\"card\"><p class=\"error\" id=\"error\">{}</p><p>{}</p></div>", esc(message_zh), esc(detail)),
    )
}

/// A short notice.
pub fn notice(text: &str) -> String {
    page("完成", &format!("<div class=\"card\"><p id=\"notice\">{}</p></div>", esc(text)))
}
