//! One rate-limited warning per sequence event.

use std::time::{Duration, Instant};

use crate::sink::events::EventRow;

/// Per-event warnings allowed per window, and the window.
const EVENT_WARNINGS_PER_WINDOW: u32 = 20;
const EVENT_LOG_WINDOW: Duration = Duration::from_secs(10);

/// One structured warning per sequence event, rate-limited: past the window's allowance
/// events are counted, and the count is logged when the window closes. Every event is in
/// the events table and the run summary either way.
#[derive(Debug, Default)]
pub(super) struct EventLog {
    window_start: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl EventLog {
    pub(super) fn warn(&mut self, topic: &str, e: &EventRow) {
        if self.window_start.is_none_or(|s| s.elapsed() >= EVENT_LOG_WINDOW) {
            self.close_window(topic);
            self.window_start = Some(Instant::now());
        }
        if self.logged >= EVENT_WARNINGS_PER_WINDOW {
            self.suppressed += 1;
            return;
        }
        self.logged += 1;
        tracing::warn!(topic, partition = e.partition, offset = e.offset, key = %e.key, kind = e.kind.as_str(),
            expected = e.expected, received = e.received, missing = e.missing, "sequence event");
    }

    /// Reports what the window left out and starts afresh.
    pub(super) fn close_window(&mut self, topic: &str) {
        if self.suppressed > 0 {
            tracing::warn!(
                topic,
                suppressed = self.suppressed,
                window_secs = EVENT_LOG_WINDOW.as_secs(),
                "more sequence events than the per-window warning allowance; all are in the events table"
            );
        }
        self.logged = 0;
        self.suppressed = 0;
    }
}
