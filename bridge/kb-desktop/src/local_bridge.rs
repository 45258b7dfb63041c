//! The local signing bridge inside the desktop app: the same `kb_bridge` server as
//! `keybridge serve`, over the app's own device service, asking PINs and consent in the
//! window (its prompter is the app's, watched so idle timeouts pause while a dialog is
//! open). Grants and the native-tool secret are the same files the CLI manages.

use kb_bridge::activity::{PromptWatch, WatchedPrompter};
use kb_bridge::consent::{Consent, GrantStore};
use kb_bridge::methods::Service;
use kb_bridge::secret::ClientSecret;
use kb_bridge::server::RunningBridge;
use kb_bridge::{Bridge, BridgeConfig};
use kb_service::devices::DeviceManager;
use kb_service::settings::{Paths, Settings};
use std::sync::Arc;

/// A running bridge and the runtime it runs on.
pub(crate) struct LocalBridge {
    pub(crate) url: String,
    running: Option<RunningBridge>,
    runtime: tokio::runtime::Runtime,
}

impl LocalBridge {
    /// Listen on 127.0.0.1:`port`.
    pub(crate) fn start(
        manager: &DeviceManager,
        paths: &Paths,
        settings: &Settings,
        port: u16,
        (grants, revocation): (Arc<GrantStore>, Arc<kb_service::revocation::RevocationChecker>),
        prompter: Arc<WatchedPrompter>,
        watch: Arc<PromptWatch>,
    ) -> Result<Self, String> {
        let secret_path = ClientSecret::path_in(&paths.config_dir);
        let secret = ClientSecret::load_or_create(&secret_path).map_err(|e| format!("{}: {e}", secret_path.display()))?;
        let config = BridgeConfig {
            port,
            consent: settings.bridge_consent,
            near_expiry_days: i64::from(settings.near_expiry_warning_days),
            ..BridgeConfig::default()
        };
        let consent = Consent::new(grants, settings.bridge_consent, prompter);
        let service =
            Arc::new(Service::new(manager.clone(), crate::trust_store(paths), consent, config).with_revocation(revocation));
        let runtime = kb_bridge::runtime_builder().build().map_err(|e| format!("runtime: {e}"))?;
        let running = runtime
            .block_on(Bridge::new(service, secret, watch).start())
            .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e} (is another KeyBridge running?)"))?;
        let url = running.url();
        tracing::info!(%url, "local bridge listening");
        Ok(LocalBridge { url, running: Some(running), runtime })
    }
}

impl Drop for LocalBridge {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            self.runtime.block_on(r.shutdown());
        }
    }
}
