//! Progress of long work (downloads, hashing), shown three ways:
//! - on a terminal, an indicatif bar with bytes, rate and ETA (a spinner when the size is
//!   unknown);
//! - when stderr is not a terminal (CI, logs, pipes), plain lines: one when a phase starts,
//!   one per 10% (at most one every 2 s, at least one every 10 s), one when it ends;
//! - with `--quiet`, nothing.
//!
//! Notes (a failed source, a resumed download) print as lines above the bar.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, HumanDuration, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tern_store::Progress;

use crate::cli::GlobalArgs;

/// The bar currently drawn, so log lines and error messages can get around it.
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Runs `f` with the active bar (if any) hidden.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    let bar = ACTIVE.lock().ok().and_then(|guard| guard.clone());
    match bar {
        Some(bar) => bar.suspend(f),
        None => f(),
    }
}

/// Removes the active bar from the screen (before an error message).
pub fn clear() {
    if let Some(bar) = ACTIVE.lock().ok().and_then(|mut guard| guard.take()) {
        bar.finish_and_clear();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Bar,
    Lines,
    Quiet,
}

/// The CLI's [`Progress`]: bar, lines or nothing.
#[derive(Debug)]
pub struct Reporter {
    mode: Mode,
    state: Mutex<LineState>,
}

#[derive(Debug, Default)]
struct LineState {
    label: String,
    total: Option<u64>,
    started: Option<Instant>,
    last_print: Option<Instant>,
    last_tenth: u64,
    position: u64,
}

impl Reporter {
    pub fn new(global: &GlobalArgs) -> Reporter {
        let mode = if global.quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Lines
        };
        Reporter {
            mode,
            state: Mutex::new(LineState::default()),
        }
    }

    fn line(&self, text: &str) {
        suspend(|| {
            let _ = writeln!(std::io::stderr().lock(), "{text}");
        });
    }
}

impl Progress for Reporter {
    fn begin(&self, label: &str, total: Option<u64>) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Bar => {
                let bar = match total {
                    Some(total) => ProgressBar::new(total).with_style(
                        ProgressStyle::with_template(
                            "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    ),
                    None => ProgressBar::new_spinner().with_style(
                        ProgressStyle::with_template("{spinner} {msg} {bytes} {binary_bytes_per_sec}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    ),
                };
                bar.set_draw_target(ProgressDrawTarget::stderr());
                bar.set_message(label.to_string());
                bar.enable_steady_tick(Duration::from_millis(200));
                if let Ok(mut active) = ACTIVE.lock()
                    && let Some(old) = active.replace(bar)
                {
                    old.finish_and_clear();
                }
            }
            Mode::Lines => {
                let now = Instant::now();
                if let Ok(mut state) = self.state.lock() {
                    *state = LineState {
                        label: label.to_string(),
                        total,
                        started: Some(now),
                        last_print: Some(now),
                        ..LineState::default()
                    };
                }
                let size = total
                    .map(|t| format!(" ({})", HumanBytes(t)))
                    .unwrap_or_default();
                self.line(&format!("{label}{size}"));
            }
        }
    }

    fn advance(&self, position: u64) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Bar => {
                if let Some(bar) = ACTIVE.lock().ok().and_then(|g| g.clone()) {
                    bar.set_position(position);
                }
            }
            Mode::Lines => {
                let Ok(mut state) = self.state.lock() else {
                    return;
                };
                state.position = position;
                let now = Instant::now();
                let tenth = state
                    .total
                    .filter(|t| *t > 0)
                    .map_or(0, |t| position * 10 / t);
                let since = state
                    .last_print
                    .map_or(Duration::MAX, |t| now.duration_since(t));
                // A line per tenth, but not more than one every 2 s; one every 10 s at least.
                let due = (tenth > state.last_tenth && since >= Duration::from_secs(2))
                    || since >= Duration::from_secs(10);
                if due {
                    state.last_tenth = tenth;
                    state.last_print = Some(now);
                    let line = progress_line(&state, now);
                    drop(state);
                    self.line(&line);
                }
            }
        }
    }

    fn note(&self, message: &str) {
        match self.mode {
            Mode::Quiet => tracing::info!("{message}"),
            _ => self.line(message),
        }
    }

    fn finish(&self) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Bar => {
                if let Some(bar) = ACTIVE.lock().ok().and_then(|mut g| g.take()) {
                    bar.finish_and_clear();
                }
            }
            Mode::Lines => {
                let Ok(state) = self.state.lock() else { return };
                if let Some(started) = state.started {
                    let line = format!(
                        "{}: done, {} in {}",
                        state.label,
                        HumanBytes(state.position),
                        HumanDuration(started.elapsed())
                    );
                    drop(state);
                    self.line(&line);
                }
            }
        }
    }
}

/// `label: 40% (39.1 MiB of 93.8 MiB, 12.0 MiB/s, ETA 5s)`.
fn progress_line(state: &LineState, now: Instant) -> String {
    let elapsed = state
        .started
        .map_or(0.0, |s| now.duration_since(s).as_secs_f64())
        .max(1e-3);
    let rate = state.position as f64 / elapsed;
    match state.total {
        Some(total) if total > 0 => {
            let left = total.saturating_sub(state.position) as f64;
            let eta = if rate > 0.0 {
                Duration::from_secs_f64(left / rate)
            } else {
                Duration::ZERO
            };
            format!(
                "{}: {}% ({} of {}, {}/s, ETA {})",
                state.label,
                state.position * 100 / total,
                HumanBytes(state.position),
                HumanBytes(total),
                HumanBytes(rate as u64),
                HumanDuration(eta)
            )
        }
        _ => format!(
            "{}: {} ({}/s)",
            state.label,
            HumanBytes(state.position),
            HumanBytes(rate as u64)
        ),
    }
}
