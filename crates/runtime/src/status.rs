//! What the runtime reports about its models: the servable list, the loaded ones with
//! their memory and statistics (`/api/ps`, `tern ps`), and a metrics snapshot
//! (`/metrics`).

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::api::{LoadState, LoadedStatus, ModelInfo, ModelMetrics, ModelStats, RuntimeMetrics};
use crate::budget::process_rss;
use crate::lifecycle::{Entry, Inner, Phase};
use crate::runtime::Runtime;

impl Runtime {
    /// Every servable model.
    pub fn models(&self) -> Vec<ModelInfo> {
        let state = self.inner.lock();
        state
            .entries
            .iter()
            .map(|e| {
                let meta = std::fs::metadata(&e.config.path).ok();
                ModelInfo {
                    name: e.config.name.clone(),
                    aliases: e.config.aliases.clone(),
                    path: e.config.path.clone(),
                    file_size: meta.as_ref().map_or(0, |m| m.len()),
                    modified: meta.and_then(|m| m.modified().ok()),
                    ctx_size: e.config.ctx_size,
                    parallel: e.config.parallel,
                    pinned: e.config.pin,
                    loaded: matches!(e.phase, Phase::Ready(_)),
                    estimate: e.estimate,
                }
            })
            .collect()
    }

    /// Models that hold memory: loading, ready or unloading.
    pub fn loaded(&self) -> Vec<LoadedStatus> {
        let state = self.inner.lock();
        let now = Instant::now();
        let wall = std::time::SystemTime::now();
        state
            .entries
            .iter()
            .filter_map(|e| {
                let (state, footprint, measured) = match &e.phase {
                    Phase::Unloaded => return None,
                    Phase::Loading { .. } => {
                        (LoadState::Loading, e.estimate.unwrap_or_default(), None)
                    }
                    Phase::Ready(l) => (LoadState::Ready, l.footprint, l.measured),
                    Phase::Unloading { .. } => {
                        (LoadState::Unloading, e.estimate.unwrap_or_default(), None)
                    }
                };
                Some(LoadedStatus {
                    name: e.config.name.clone(),
                    state,
                    bytes_estimate: footprint.total(),
                    footprint,
                    bytes_measured: measured,
                    expires_at: e
                        .expires_at
                        .map(|t| wall + t.saturating_duration_since(now)),
                    pinned: e.config.pin,
                    in_flight: e.in_flight,
                    ctx_size: e.config.ctx_size,
                    parallel: e.config.parallel,
                    stats: stats_of(e),
                })
            })
            .collect()
    }

    /// A snapshot for `/metrics`.
    pub fn metrics(&self) -> RuntimeMetrics {
        let state = self.inner.lock();
        let models: Vec<ModelMetrics> = state
            .entries
            .iter()
            .map(|e| {
                let (queue_depth, measured) = match &e.phase {
                    Phase::Ready(l) => (l.shared.queue_depth(), l.measured),
                    _ => (0, None),
                };
                ModelMetrics {
                    name: e.config.name.clone(),
                    loaded: matches!(e.phase, Phase::Ready(_)),
                    queue_depth,
                    active_sequences: e.counters.active.load(Ordering::Relaxed),
                    bytes_estimate: e.phase.reserved(),
                    bytes_measured: measured,
                    stats: stats_of(e),
                }
            })
            .collect();
        RuntimeMetrics {
            queue_depth: models.iter().map(|m| m.queue_depth).sum(),
            active_sequences: models.iter().map(|m| m.active_sequences).sum(),
            budget_bytes: self.inner.budget,
            reserved_bytes: Inner::reserved(&state),
            rss_bytes: process_rss(),
            models,
        }
    }
}

/// An entry's statistics with the scheduler's counters folded in.
fn stats_of(e: &Entry) -> ModelStats {
    let c = &e.counters;
    ModelStats {
        tokens_in: c.tokens_in.load(Ordering::Relaxed),
        tokens_out: c.tokens_out.load(Ordering::Relaxed),
        forward_calls: c.forward_calls.load(Ordering::Relaxed),
        prefix_reused_tokens: c.prefix_reused.load(Ordering::Relaxed),
        cancelled: c.cancelled.load(Ordering::Relaxed),
        rejected_queue_full: c.rejected_queue_full.load(Ordering::Relaxed),
        timeouts: c.timeouts.load(Ordering::Relaxed),
        ..e.stats.clone()
    }
}
