//! The privacy page: what personal data KeyBridge handles and where it stays, and every
//! third-party library in the build with its licence.
//!
//! The library list (`third-party.json`) is generated from `cargo metadata` (the desktop
//! app's normal dependencies, Linux) and `ui/package-lock.json` (the UI's runtime
//! packages); the test `the_third_party_list_is_current` fails when it drifts and
//! `KB_REGEN=1 cargo test -p kb-desktop the_third_party_list_is_current` rewrites it.

use crate::model::{DataItem, Library, PrivacyInfo};
use kb_types::Lang;

/// The generated library list.
const THIRD_PARTY: &str = include_str!("../third-party.json");

fn item(lang: Lang, what: (&str, &str), why: (&str, &str), kept: (&str, &str)) -> DataItem {
    let pick = |p: (&str, &str)| if lang == Lang::En { p.1 } else { p.0 }.to_string();
    DataItem { what: pick(what), why: pick(why), kept: pick(kept) }
}

/// The page's contents in `lang`.
pub fn info(lang: Lang) -> PrivacyInfo {
    let local = ("仅保存在本机", "on this computer only");
    let data_items = vec![
        item(
            lang,
            ("证书（含姓名、单位、证件号等主题信息）", "certificates (subject: name, organisation, ID numbers)"),
            ("显示、签名、验证与续期", "to show, sign, verify and renew"),
            ("保存在介质上；本机只在使用时读取", "on the key medium; read only while in use"),
        ),
        item(
            lang,
            ("介质口令（PIN）", "PINs"),
            ("解锁介质上的私钥", "to unlock private keys on the medium"),
            (
                "从不写入磁盘或日志；按设置在内存中缓存（默认 30 分钟），可随时清除",
                "never written to disk or logs; cached in memory as configured (default 30 min), clearable",
            ),
        ),
        item(
            lang,
            (
                "审计记录：时间、调用方（网页来源或程序）、介质、操作、证书、结果",
                "audit records: time, caller (web origin or tool), medium, operation, certificate, result",
            ),
            ("让您核查每一次密钥使用", "so you can review every use of your keys"),
            local,
        ),
        item(
            lang,
            ("运行日志（不含口令与私钥）", "logs (no PINs, no keys)"),
            ("排查故障；可在设置中关闭", "troubleshooting; can be turned off in settings"),
            ("本机；仅在您导出时加密交给技术支持", "on this computer; sent to support only when you export them, encrypted"),
        ),
        item(
            lang,
            ("网页授权记录（哪些网站可以使用 KeyBridge）", "web-site grants (which sites may use KeyBridge)"),
            ("本地签名服务的访问控制", "access control of the local signing bridge"),
            local,
        ),
        item(
            lang,
            ("更新检查请求（仅含版本号）", "update check request (version number only)"),
            ("检查新版本；可在设置中关闭", "to look for a new version; can be turned off"),
            ("发送到您配置的更新地址", "sent to the update URL you configured"),
        ),
    ];
    let libraries: Vec<Library> = serde_json::from_str(THIRD_PARTY).unwrap_or_default();
    PrivacyInfo { data_items, libraries }
}

/// The library list from `cargo metadata --format-version 1` output (root package
/// `root`) and an npm `package-lock.json` (runtime packages only), sorted.
pub fn generate(metadata: &serde_json::Value, package_lock: &serde_json::Value, root: &str) -> Vec<Library> {
    use std::collections::{BTreeMap, BTreeSet};
    let str_of = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
    let packages: BTreeMap<String, &serde_json::Value> =
        metadata["packages"].as_array().into_iter().flatten().map(|p| (str_of(p, "id"), p)).collect();
    let nodes: BTreeMap<String, &serde_json::Value> =
        metadata["resolve"]["nodes"].as_array().into_iter().flatten().map(|n| (str_of(n, "id"), n)).collect();
    let root_id = packages.values().find(|p| p["name"] == root).map(|p| str_of(p, "id")).unwrap_or_default();
    // Normal dependencies only (what ships), transitively.
    let mut seen = BTreeSet::new();
    let mut stack = vec![root_id];
    while let Some(id) = stack.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        for dep in nodes.get(&id).and_then(|n| n["deps"].as_array()).into_iter().flatten() {
            let normal = dep["dep_kinds"].as_array().is_some_and(|k| k.iter().any(|k| k["kind"].is_null()));
            if normal {
                stack.push(str_of(dep, "pkg"));
            }
        }
    }
    let mut out: Vec<Library> = seen
        .iter()
        .filter_map(|id| packages.get(id))
        .filter(|p| !p["source"].is_null()) // our own crates are not third-party
        .map(|p| Library {
            name: str_of(p, "name"),
            version: str_of(p, "version"),
            license: Some(str_of(p, "license")).filter(|l| !l.is_empty()).unwrap_or_else(|| "see package".into()),
            ecosystem: "rust".into(),
        })
        .collect();
    for (path, p) in package_lock["packages"].as_object().into_iter().flatten() {
        let Some(name) = path.rsplit("node_modules/").next().filter(|_| path.contains("node_modules/")) else { continue };
        if p["dev"].as_bool() == Some(true) || p["devOptional"].as_bool() == Some(true) {
            continue;
        }
        out.push(Library {
            name: name.to_string(),
            version: str_of(p, "version"),
            license: Some(str_of(p, "license")).filter(|l| !l.is_empty()).unwrap_or_else(|| "see package".into()),
            ecosystem: "npm".into(),
        });
    }
    out.sort_by(|a, b| (&a.ecosystem, &a.name, &a.version).cmp(&(&b.ecosystem, &b.name, &b.version)));
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_third_party_list_is_current() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let out = std::process::Command::new(env!("CARGO"))
            .args(["metadata", "--format-version", "1", "--locked", "--offline", "--filter-platform", "x86_64-unknown-linux-gnu"])
            .current_dir(&root)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let lock: serde_json::Value = serde_json::from_slice(&std::fs::read(root.join("ui/package-lock.json")).unwrap()).unwrap();
        let libs = generate(&metadata, &lock, "keybridge-desktop");
        assert!(libs.iter().any(|l| l.name == "tauri" && l.ecosystem == "rust"), "tauri is in the build");
        assert!(libs.iter().any(|l| l.name == "vue" && l.ecosystem == "npm"), "vue is in the build");
        assert!(!libs.iter().any(|l| l.name == "vitest"), "dev tools do not ship");
        let text = serde_json::to_string_pretty(&libs).unwrap() + "\n";
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("third-party.json");
        if std::env::var_os("KB_REGEN").is_some() {
            std::fs::write(&file, &text).unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            text,
            "third-party.json is stale: KB_REGEN=1 cargo test -p kb-desktop the_third_party_list_is_current"
        );
        // And the page shows exactly it.
        assert_eq!(info(Lang::ZhCn).libraries, libs);
    }

    #[test]
    fn the_data_list_is_complete_in_both_languages() {
        let (zh, en) = (info(Lang::ZhCn), info(Lang::En));
        assert_eq!(zh.data_items.len(), en.data_items.len());
        assert!(zh.data_items.iter().any(|d| d.what.contains("口令")));
        assert!(en.data_items.iter().all(|d| d.what.is_ascii() && !d.kept.is_empty()));
    }
}
