//! Shows a consume run's progress: a bar on a terminal for bounded runs, periodic log lines otherwise.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use k2_ingest::pipeline::Progress;
use tokio::sync::watch;

/// How `consume` shows its progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal and the run is bounded (no --follow); lines otherwise.
    #[default]
    Auto,
    /// A bar on stderr (records, rate, ETA), redrawn a few times a second.
    Bar,
    /// An INFO log line every --progress-interval seconds.
    Lines,
    /// Nothing beyond the commit log lines.
    Off,
}

/// The bar being drawn, if any: log lines are written with it hidden, so they never tear it.
static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Stderr for the log subscriber, hiding the progress bar while a line is written.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = BAR.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf)).map(|()| buf.len()),
            None => std::io::stderr().write_all(buf).map(|()| buf.len()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Starts showing `rx` in `mode`; the task ends when the run drops its sender, and should
/// be awaited then so the bar's last state is drawn.
pub fn show(
    mode: ProgressMode,
    bounded: bool,
    max_messages: Option<u64>,
    interval: Duration,
    rx: watch::Receiver<Progress>,
) -> Option<tokio::task::JoinHandle<()>> {
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    match mode {
        ProgressMode::Off => None,
        ProgressMode::Bar => Some(tokio::spawn(bar(max_messages, rx))),
        ProgressMode::Auto if terminal && bounded => Some(tokio::spawn(bar(max_messages, rx))),
        ProgressMode::Auto | ProgressMode::Lines => Some(tokio::spawn(lines(interval, rx))),
    }
}

async fn bar(max_messages: Option<u64>, mut rx: watch::Receiver<Progress>) {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
    let style = ProgressStyle::with_template(
        "{spinner} {elapsed_precise} [{wide_bar}] {human_pos}/{human_len} msgs  {per_sec}  ETA {eta}  {msg}",
    )
    .expect("static template")
    .progress_chars("=> ");
    bar.set_style(style);
    *BAR.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
    while rx.changed().await.is_ok() {
        let p = rx.borrow_and_update().clone();
        // The backlog grows while producers write: the length follows it.
        if let Some(behind) = p.behind {
            let total = p.consumed + behind;
            bar.set_length(max_messages.map_or(total, |m| m.min(total)));
        }
        bar.set_position(p.consumed);
        bar.set_message(match &p.waiting_for {
            Some(what) => format!("waiting for {what}"),
            None => format!("written {} rejected {} undecodable {}", p.written, p.rejected, p.undecodable),
        });
    }
    bar.finish();
    *BAR.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

async fn lines(interval: Duration, mut rx: watch::Receiver<Progress>) {
    let (mut last, mut last_at) = (Progress::default(), Instant::now());
    // The run publishes about once a second; a line goes out once `interval` has passed.
    while rx.changed().await.is_ok() {
        if last_at.elapsed() < interval {
            continue;
        }
        let p = rx.borrow_and_update().clone();
        let secs = last_at.elapsed().as_secs_f64();
        let rate = (p.consumed - last.consumed) as f64 / secs.max(1e-3);
        let eta_secs = p.behind.filter(|_| rate >= 1.0).map(|b| (b as f64 / rate).round() as u64);
        tracing::info!(
            consumed = p.consumed,
            written = p.written,
            rejected = p.rejected,
            undecodable = p.undecodable,
            commits = p.commits,
            behind = p.behind,
            rate_per_sec = rate.round() as u64,
            eta_secs,
            waiting_for = p.waiting_for.as_deref(),
            "progress"
        );
        (last, last_at) = (p, Instant::now());
    }
}
