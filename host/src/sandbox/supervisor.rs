//! Keeps one topic-partition's validator running: replaces a failed instance and applies the topic's policy.

use std::collections::VecDeque;
use std::ops::Range;
use std::time::Duration;

use arrow_array::RecordBatch;

use crate::config::{FailurePolicy, ValidatorConfig};
use crate::error::{Error, Result};
use crate::sandbox::instance::{CallFailure, FailureKind};
use crate::sandbox::{BatchInput, ModuleInfo, Rejection, ValidatorInstance, ValidatorModule, Verdict};

/// The reason code of a record rejected because the validator failed on it.
pub const FAILED_CODE: &str = "validator-failed";

/// What recovery did over a run, for the run summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryStats {
    /// Instances discarded after a failed call and built again.
    pub restarts: u64,
    /// Records rejected with [`FAILED_CODE`] under the `isolate` policy.
    pub isolated: u64,
    /// Calls that failed (trap, deadline, memory limit, bad verdict); a refused batch is not one.
    pub traps: u64,
}

/// A validator for one topic-partition that survives its own failures.
///
/// After a failed call the instance is discarded and a new one is restored to the state
/// after the last batch that succeeded: that is the state matching the records already
/// handed to the writer, so sequence checks continue exactly where the data does.
pub struct SupervisedValidator {
    module: ValidatorModule,
    settings: Vec<(String, String)>,
    policy: FailurePolicy,
    isolate_max: usize,
    backoff: Duration,
    backoff_max: Duration,
    instance: Option<ValidatorInstance>,
    info: ModuleInfo,
    /// The guest's state after the last good call, kept only under `isolate` (the only
    /// policy that goes on after a failure).
    last_good: Option<Vec<u8>>,
    /// Records isolated since the last good call; drives the backoff. Halving a batch is
    /// progress and restarts at once; failing record after record is not, and slows down.
    isolated_in_a_row: u32,
    stats: RecoveryStats,
    /// `stats` as last handed out by `take_recovery`.
    reported: RecoveryStats,
}

impl SupervisedValidator {
    /// Instantiates the module with the topic's settings, restored to `state` (committed
    /// with the data the partition resumes after) when there is one.
    pub fn start(module: &ValidatorModule, config: &ValidatorConfig, state: Option<Vec<u8>>) -> Result<Self> {
        let settings: Vec<(String, String)> = config.settings.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut instance = module.instantiate(&settings)?;
        if let Some(state) = &state {
            instance.restore(state)?;
        }
        let limits = module.limits();
        Ok(Self {
            module: module.clone(),
            policy: config.on_failure,
            isolate_max: config.isolate_max_records,
            backoff: Duration::from_millis(limits.restart_backoff_ms),
            backoff_max: Duration::from_millis(limits.restart_backoff_max_ms),
            info: instance.info().clone(),
            instance: Some(instance),
            settings,
            last_good: state,
            isolated_in_a_row: 0,
            stats: RecoveryStats::default(),
            reported: RecoveryStats::default(),
        })
    }

    pub fn info(&self) -> &ModuleInfo {
        &self.info
    }

    pub fn stats(&self) -> RecoveryStats {
        self.stats
    }

    /// What recovery did since the last call: each restart, isolation and trap is reported once.
    pub fn take_recovery(&mut self) -> RecoveryStats {
        let (now, before) = (self.stats, std::mem::replace(&mut self.reported, self.stats));
        RecoveryStats {
            restarts: now.restarts - before.restarts,
            isolated: now.isolated - before.isolated,
            traps: now.traps - before.traps,
        }
    }

    /// The guest's state now: after the last batch it validated.
    pub fn snapshot(&mut self) -> Result<Vec<u8>> {
        match (&mut self.instance, &self.last_good) {
            (Some(instance), _) => instance.snapshot(),
            // Only a failed restart leaves no instance, and that stops the topic.
            (None, Some(state)) => Ok(state.clone()),
            (None, None) => Ok(Vec::new()),
        }
    }

    /// Validates a batch. Under `fail`, a failed call is an error that stops the topic;
    /// under `isolate`, the records the validator fails on are rejected and the rest go on.
    pub async fn validate(&mut self, input: &BatchInput<'_>) -> Result<Verdict> {
        let failure = match self.call(input) {
            Ok(verdict) => return Ok(verdict),
            Err(f) => f,
        };
        if self.policy == FailurePolicy::Fail || failure.kind == FailureKind::Refused {
            // A refusal is the guest saying the batch as a whole cannot be checked (a missing
            // column, a bad setting): rejecting records one by one would hide that.
            return Err(failure.error);
        }
        tracing::warn!(topic = input.topic, partition = input.partition, batch_first_offset = input.offsets[0],
            records = input.len(), error = %failure.error, "validator failed on a batch; isolating the records it fails on");
        self.restart().await?;
        self.isolate(input).await
    }

    /// One call on the live instance; a failure poisons it.
    fn call(&mut self, input: &BatchInput<'_>) -> std::result::Result<Verdict, CallFailure> {
        let instance = self.instance.as_mut().expect("a live instance between calls");
        match instance.try_validate(input) {
            Ok(verdict) => {
                self.isolated_in_a_row = 0;
                if self.policy == FailurePolicy::Isolate {
                    match instance.snapshot() {
                        Ok(state) => self.last_good = Some(state),
                        Err(error) => return Err(CallFailure { kind: FailureKind::Trapped, error }),
                    }
                }
                Ok(verdict)
            }
            Err(f) => {
                if f.kind != FailureKind::Refused {
                    self.stats.traps += 1;
                    self.instance = None;
                }
                Err(f)
            }
        }
    }

    /// Re-runs `input` as sub-batches, in order, halving any that fails, down to single
    /// records; those are rejected. Each sub-batch runs on the state the previous ones left.
    async fn isolate(&mut self, input: &BatchInput<'_>) -> Result<Verdict> {
        let mut verdict = Verdict::default();
        let mut failed = 0usize;
        let mut todo: VecDeque<Range<usize>> = VecDeque::new();
        let half = input.len() / 2;
        todo.push_back(0..half);
        todo.push_back(half..input.len());
        while let Some(range) = todo.pop_front() {
            if range.is_empty() {
                continue;
            }
            let sub = SubBatch::new(input, range.clone());
            let failure = match self.call(&sub.input(input)) {
                Ok(v) => {
                    verdict.rejected.extend(v.rejected.into_iter().map(|mut r| {
                        r.index += range.start;
                        r
                    }));
                    verdict.events.extend(v.events.into_iter().map(|mut e| {
                        e.index += range.start;
                        e
                    }));
                    continue;
                }
                Err(f) if f.kind == FailureKind::Refused => return Err(f.error),
                Err(f) => f,
            };
            if range.len() > 1 {
                self.restart().await?;
                let mid = range.start + range.len() / 2;
                todo.push_front(mid..range.end);
                todo.push_front(range.start..mid);
                continue;
            }
            failed += 1;
            self.stats.isolated += 1;
            self.isolated_in_a_row += 1;
            if failed > self.isolate_max {
                return Err(Error::Topic {
                    topic: input.topic.to_string(),
                    message: format!(
                        "validator {} failed on more than {} records of one batch (partition {}, offsets {}..); \
                         the module looks broken rather than the records (topics.validator.isolate_max_records)",
                        self.info.name, self.isolate_max, input.partition, input.offsets[0]
                    ),
                });
            }
            self.restart().await?;
            verdict.rejected.push(Rejection {
                index: range.start,
                code: FAILED_CODE.into(),
                message: failure.error.to_string(),
            });
        }
        verdict.rejected.sort_by_key(|r| r.index);
        verdict.events.sort_by_key(|e| e.index);
        tracing::warn!(
            topic = input.topic,
            partition = input.partition,
            batch_first_offset = input.offsets[0],
            failed,
            restarts = self.stats.restarts,
            "isolated the records the validator fails on"
        );
        Ok(verdict)
    }

    /// A fresh instance restored to the last good state. Once records fail one after another
    /// with no good call between them, each restart waits twice as long as the one before.
    async fn restart(&mut self) -> Result<()> {
        if self.isolated_in_a_row > 1 {
            let doublings = (self.isolated_in_a_row - 2).min(16);
            let wait = self.backoff.saturating_mul(1 << doublings).min(self.backoff_max);
            tokio::time::sleep(wait).await;
        }
        self.stats.restarts += 1;
        self.instance = None;
        let mut instance = self.module.instantiate(&self.settings)?;
        if let Some(state) = &self.last_good {
            instance.restore(state)?;
        }
        self.instance = Some(instance);
        Ok(())
    }
}

/// Records `range` of a batch as a batch of their own: the columns sliced (no copy), the
/// keys re-based.
struct SubBatch {
    records: RecordBatch,
    range: Range<usize>,
    key_offsets: Vec<u32>,
}

impl SubBatch {
    fn new(input: &BatchInput<'_>, range: Range<usize>) -> Self {
        let records = input.records.slice(range.start, range.len());
        let keys = &input.key_offsets[range.start..=range.end];
        let key_offsets = keys.iter().map(|o| o - keys[0]).collect();
        Self { records, range, key_offsets }
    }

    fn input<'a>(&'a self, whole: &BatchInput<'a>) -> BatchInput<'a> {
        let r = self.range.clone();
        let keys = whole.key_offsets[r.start] as usize..whole.key_offsets[r.end] as usize;
        BatchInput {
            topic: whole.topic,
            partition: whole.partition,
            records: &self.records,
            fields: whole.fields,
            offsets: &whole.offsets[r.clone()],
            timestamps_us: &whole.timestamps_us[r],
            key_data: &whole.key_data[keys],
            key_offsets: &self.key_offsets,
            now_micros: whole.now_micros,
        }
    }
}
