//! What a validator says about a batch: the records it rejects and the sequence events it saw.

/// The outcome of one batch: sparse, so an all-good batch costs nothing to hand back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    rejected: Vec<Rejection>,
    events: Vec<SequenceEvent>,
}

/// A record set aside: its index in the batch, a stable code and a message naming the bad value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub index: u32,
    pub code: String,
    pub message: String,
}

/// An anomaly in one key's sequence numbers, at record `index` of the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceEvent {
    pub index: u32,
    pub kind: EventKind,
    pub key: String,
    /// The sequence number the key's next record should have had.
    pub expected: i64,
    pub received: i64,
    /// How many sequence numbers a gap skipped; 0 for the other kinds.
    pub missing: i64,
}

/// The kinds of [`SequenceEvent`], as [`crate::SequenceTracker`] defines them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Gap,
    Duplicate,
    OutOfOrder,
    Reset,
}

impl Verdict {
    /// An empty verdict: every record accepted, no event.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rejects record `index` with a stable `code` and a message naming the bad value.
    #[inline]
    pub fn reject(&mut self, index: usize, code: impl Into<String>, message: impl Into<String>) {
        self.rejected.push(Rejection { index: index as u32, code: code.into(), message: message.into() });
    }

    /// Reports a sequence event (usually from [`crate::SequenceTracker`]).
    #[inline]
    pub fn event(&mut self, event: SequenceEvent) {
        self.events.push(event);
    }

    /// The rejections so far, in the order given.
    pub fn rejected(&self) -> &[Rejection] {
        &self.rejected
    }

    /// The sequence events so far, in the order given.
    pub fn events(&self) -> &[SequenceEvent] {
        &self.events
    }

    /// Both lists, for the component edge.
    pub(crate) fn into_parts(self) -> (Vec<Rejection>, Vec<SequenceEvent>) {
        (self.rejected, self.events)
    }
}
