//! The state every handler shares: the runtime, the settings, the keys and limits, the
//! metrics, and whether the server is draining for shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use tern_runtime::Runtime;
use tern_store::Store;

use crate::auth::{ApiKeys, RateLimiter};
use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::model_files::ModelFiles;

/// Cheap to clone: clones share everything.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    runtime: Runtime,
    config: ServerConfig,
    keys: ApiKeys,
    limiter: Option<RateLimiter>,
    metrics: Metrics,
    store: Option<Arc<Store>>,
    files: ModelFiles,
    started: SystemTime,
    draining: AtomicBool,
}

impl AppState {
    /// The state for a server over `runtime`. `config` should have been validated
    /// ([`ServerConfig::validate`]).
    pub fn new(runtime: Runtime, config: ServerConfig) -> AppState {
        AppState::build(runtime, config, None)
    }

    /// Also serves `/api/pull` from `store`.
    pub fn with_store(runtime: Runtime, config: ServerConfig, store: Arc<Store>) -> AppState {
        AppState::build(runtime, config, Some(store))
    }

    fn build(runtime: Runtime, config: ServerConfig, store: Option<Arc<Store>>) -> AppState {
        let keys = ApiKeys::new(&config.api_keys);
        let limiter = config.rate_limit.map(RateLimiter::new);
        let metrics = Metrics::new(runtime.clone());
        AppState {
            inner: Arc::new(Inner {
                runtime,
                config,
                keys,
                limiter,
                metrics,
                store,
                files: ModelFiles::default(),
                started: SystemTime::now(),
                draining: AtomicBool::new(false),
            }),
        }
    }

    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    pub fn api_keys(&self) -> &ApiKeys {
        &self.inner.keys
    }

    pub fn rate_limiter(&self) -> Option<&RateLimiter> {
        self.inner.limiter.as_ref()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn store(&self) -> Option<&Arc<Store>> {
        self.inner.store.as_ref()
    }

    /// Facts read from the model files (details, metadata, token texts).
    pub fn files(&self) -> &ModelFiles {
        &self.inner.files
    }

    pub fn started(&self) -> SystemTime {
        self.inner.started
    }

    /// Shutdown has begun: readiness fails so load balancers stop sending work.
    pub fn begin_draining(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }
}
