//! One validator instance in its own store: limits, deadline per call, checked verdicts.

use std::path::{Path, PathBuf};

use wasmtime::component::{ResourceAny, ResourceTable};
use wasmtime::{ResourceLimiter, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::error::{Error, Result};
use crate::guest::batch::{BatchInput, Layout};
use crate::guest::bindings::{self, Host, Level, Validator as ValidatorWorld, ValidatorPre, wit};
use crate::guest::engine::{EPOCH_TICK, GuestEngine};
use crate::guest::{EventKind, ModuleInfo, Rejection, SequenceEvent, Verdict};

/// The WIT package version this host implements.
pub const WIT_VERSION: &str = "0.2.0";

/// Log lines a guest may emit per call, and the longest line kept, in bytes.
const LOG_LINES_PER_CALL: u32 = 16;
const LOG_LINE_MAX_BYTES: usize = 1024;
/// A reason message longer than this is cut, so a guest cannot balloon the dead letters.
const MESSAGE_MAX_BYTES: usize = 1024;
/// Most fields a validator may name in its `reads`; far beyond any market-data schema.
const READS_MAX_FIELDS: usize = 10_000;

/// Store data of one instance: an empty WASI context (no files, env, args or sockets),
/// the memory limiter and the log budget.
pub struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: MemoryLimit,
    log_budget: u32,
    log_suppressed: u32,
    module: String,
    /// Fixed and per-record parts of a call's time limit, in microseconds.
    call_base_us: u64,
    call_per_record_us: u64,
}

/// Caps a store's linear memory and remembers a refusal, so the trap that follows (a guest
/// aborts when allocation fails) can be reported as what it is.
struct MemoryLimit {
    bytes: usize,
    hit: bool,
}

/// Table elements a guest may grow to; far beyond what a validator needs.
const TABLE_ELEMENTS_MAX: usize = 1 << 20;

impl ResourceLimiter for MemoryLimit {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = desired <= self.bytes;
        self.hit |= !allowed;
        Ok(allowed)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= TABLE_ELEMENTS_MAX)
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl bindings::k2::ingest::types::Host for GuestState {}

impl Host for GuestState {
    fn log(&mut self, level: Level, message: String) {
        if self.log_budget == 0 {
            self.log_suppressed += 1;
            return;
        }
        self.log_budget -= 1;
        let message = truncate(message, LOG_LINE_MAX_BYTES);
        let module = self.module.as_str();
        match level {
            Level::Debug => tracing::debug!(module, "guest: {message}"),
            Level::Info => tracing::info!(module, "guest: {message}"),
            Level::Warn => tracing::warn!(module, "guest: {message}"),
            // A guest cannot page an operator: its errors are warnings of the host.
            Level::Error => tracing::warn!(module, guest_level = "error", "guest: {message}"),
        }
    }
}

/// A live validator for one topic-partition. After any error it is poisoned: drop it
/// and build a new one from the last committed state.
pub struct ValidatorInstance {
    store: Store<GuestState>,
    world: ValidatorWorld,
    resource: ResourceAny,
    path: PathBuf,
    info: ModuleInfo,
    /// What the validator reads, and conversion buffers reused by every call.
    layout: Layout,
}

/// A fresh store with the engine's limits, the component instantiated in it, and its info
/// checked against the WIT version this host implements.
pub(crate) fn start(
    engine: &GuestEngine,
    pre: &ValidatorPre<GuestState>,
    path: &Path,
) -> Result<(Store<GuestState>, ValidatorWorld, wit::ModuleInfo)> {
    let limits = engine.limits();
    let base_us = limits.call_timeout_ms.saturating_mul(1000);
    let state = GuestState {
        wasi: WasiCtx::builder().build(),
        table: ResourceTable::new(),
        limits: MemoryLimit { bytes: limits.memory_limit_bytes, hit: false },
        log_budget: LOG_LINES_PER_CALL,
        log_suppressed: 0,
        module: path.display().to_string(),
        call_base_us: base_us,
        call_per_record_us: limits.call_timeout_per_record_us,
    };
    let mut store = Store::new(engine.engine(), state);
    store.limiter(|s| &mut s.limits);
    store.epoch_deadline_trap();
    store.set_epoch_deadline(ticks(base_us));
    let err = |message: String| Error::Guest { module: path.to_path_buf(), message };
    let world = off_executor(|| pre.instantiate(&mut store)).map_err(|e| err(format!("cannot instantiate: {e:#}")))?;
    let info = off_executor(|| world.k2_ingest_validation().call_info(&mut store))
        .map_err(|e| err(format!("trapped in info: {}", describe_trap(&e, store.data(), base_us))))?;
    if info.wit_version != WIT_VERSION {
        return Err(err(format!("built for k2:ingest@{}, this host implements @{WIT_VERSION}", info.wit_version)));
    }
    Ok((store, world, info))
}

impl ValidatorInstance {
    pub(crate) fn new(
        engine: &GuestEngine,
        pre: &ValidatorPre<GuestState>,
        path: &Path,
        settings: &[(String, String)],
    ) -> Result<Self> {
        let (mut store, world, info) = start(engine, pre, path)?;
        let base_us = store.data().call_base_us;
        let err = |message: String| Error::Guest { module: path.to_path_buf(), message };
        store.set_epoch_deadline(ticks(base_us));
        let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let resource = off_executor(|| world.k2_ingest_validation().validator().call_create(&mut store, &settings))
            .map_err(|e| err(format!("trapped in create: {}", describe_trap(&e, store.data(), base_us))))?
            .map_err(|e| err(format!("refused its settings: {}", truncate(e, MESSAGE_MAX_BYTES))))?;
        store.set_epoch_deadline(ticks(base_us));
        let reads = off_executor(|| world.k2_ingest_validation().validator().call_reads(&mut store, resource))
            .map_err(|e| err(format!("trapped in reads: {}", describe_trap(&e, store.data(), base_us))))?;
        if let Some(n) = reads.fields.as_ref().map(Vec::len).filter(|&n| n > READS_MAX_FIELDS) {
            return Err(err(format!(
                "asked to read {n} fields, more than the {READS_MAX_FIELDS} a validator may name"
            )));
        }
        let layout = Layout::new(reads);
        let info = ModuleInfo { name: info.name, version: info.version, wit_version: info.wit_version };
        Ok(Self { store, world, resource, path: path.to_path_buf(), info, layout })
    }

    pub fn info(&self) -> &ModuleInfo {
        &self.info
    }

    fn err(&self, message: String) -> Error {
        Error::Guest { module: self.path.clone(), message }
    }

    /// Hands one batch to the guest and checks what comes back.
    pub fn validate(&mut self, input: &BatchInput<'_>) -> Result<Verdict> {
        self.try_validate(input).map_err(|f| f.error)
    }

    /// Like [`ValidatorInstance::validate`], telling a broken call (the instance is poisoned)
    /// from a batch the guest refused on purpose.
    pub fn try_validate(&mut self, input: &BatchInput<'_>) -> std::result::Result<Verdict, CallFailure> {
        let len = input.len();
        let budget_us = self.call_budget_us(len);
        let mut columns = Vec::with_capacity(input.fields.len());
        let batch = match self.layout.lay_out(input, &mut columns) {
            Ok(batch) => batch,
            Err(message) => {
                let error = Error::Guest { module: self.path.clone(), message };
                return Err(CallFailure::new(FailureKind::Refused, error));
            }
        };
        self.store.set_epoch_deadline(ticks(budget_us));
        self.store.data_mut().log_budget = LOG_LINES_PER_CALL;
        self.store.data_mut().log_suppressed = 0;
        let (world, store, resource) = (&self.world, &mut self.store, self.resource);
        let result = off_executor(|| world.k2_ingest_validation().validator().call_validate(store, resource, batch));
        let suppressed = self.store.data().log_suppressed;
        if suppressed > 0 {
            tracing::warn!(module = %self.path.display(), suppressed, "guest log lines over the per-call budget were dropped");
        }
        let first = input.offsets.first().copied().unwrap_or(-1);
        let verdict = result
            .map_err(|e| {
                let message = format!(
                    "trapped in validate (partition {}, offsets {first}..): {}",
                    input.partition,
                    describe_trap(&e, self.store.data(), budget_us)
                );
                CallFailure::new(FailureKind::Trapped, self.err(message))
            })?
            .map_err(|e| {
                let message =
                    format!("failed a batch (partition {}): {}", input.partition, truncate(e, MESSAGE_MAX_BYTES));
                CallFailure::new(FailureKind::Refused, self.err(message))
            })?;
        check_verdict(verdict, len).map_err(|m| CallFailure::new(FailureKind::BadVerdict, self.err(m)))
    }

    /// The guest's state, to commit with the data.
    pub fn snapshot(&mut self) -> Result<Vec<u8>> {
        let budget_us = self.call_budget_us(0);
        self.store.set_epoch_deadline(ticks(budget_us));
        let (world, store, resource) = (&self.world, &mut self.store, self.resource);
        off_executor(|| world.k2_ingest_validation().validator().call_snapshot(store, resource))
            .map_err(|e| self.err(format!("trapped in snapshot: {}", describe_trap(&e, self.store.data(), budget_us))))
    }

    /// Replaces the guest's state with a committed snapshot.
    pub fn restore(&mut self, state: &[u8]) -> Result<()> {
        let budget_us = self.call_budget_us(0);
        self.store.set_epoch_deadline(ticks(budget_us));
        let (world, store, resource) = (&self.world, &mut self.store, self.resource);
        off_executor(|| world.k2_ingest_validation().validator().call_restore(store, resource, state))
            .map_err(|e| self.err(format!("trapped in restore: {}", describe_trap(&e, self.store.data(), budget_us))))?
            .map_err(|e| self.err(format!("refused its saved state: {}", truncate(e, MESSAGE_MAX_BYTES))))
    }

    fn call_budget_us(&self, records: usize) -> u64 {
        let state = self.store.data();
        state.call_base_us.saturating_add(state.call_per_record_us.saturating_mul(records as u64))
    }
}

/// Why a validate call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// A trap: panic, deadline, memory limit, stack overflow. The instance is poisoned.
    Trapped,
    /// A verdict the host refused (index out of range, too large). The instance is not trusted.
    BadVerdict,
    /// The guest returned an error for the batch as a whole (e.g. a column it needs is
    /// missing), or the batch could not be laid out for it: a fault of the setup, not of a record.
    Refused,
}

/// A failed validate call: what kind of failure, and the error naming the module.
#[derive(Debug)]
pub struct CallFailure {
    pub kind: FailureKind,
    pub error: Error,
}

impl CallFailure {
    fn new(kind: FailureKind, error: Error) -> Self {
        Self { kind, error }
    }
}

/// Runs a guest call off the async executor. wasmtime-wasi's synchronous host functions
/// (a guest's panic message goes to WASI stderr) call `Handle::block_on` when a tokio runtime
/// is current, which panics on an executor thread; and a guest call is CPU-bound blocking
/// work that should not hold an executor thread anyway.
fn off_executor<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        // A current-thread runtime cannot block in place: a plain thread has no runtime.
        Ok(_) => std::thread::scope(|scope| match scope.spawn(f).join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }),
        Err(_) => f(),
    }
}

/// One line for a failed guest call: the trap and its cause, not the wasm backtrace
/// (that goes to the debug log).
fn describe_trap(e: &wasmtime::Error, state: &GuestState, budget_us: u64) -> String {
    tracing::debug!(module = %state.module, "guest trap: {e:?}");
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => format!("exceeded its deadline of {} ms", budget_us / 1000),
        Some(trap) if state.limits.hit => {
            format!("{trap} after reaching the memory limit of {} bytes", state.limits.bytes)
        }
        Some(trap) => trap.to_string(),
        None => e.root_cause().to_string(),
    }
}

/// Epoch ticks covering `micros`, at least one.
fn ticks(micros: u64) -> u64 {
    (micros / EPOCH_TICK.as_micros() as u64).max(1) + 1
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// Checks a guest's verdict against the batch: indices in range, each rejected once,
/// no more events than records; messages bounded. Sorts rejections by index.
fn check_verdict(v: wit::Verdict, len: usize) -> std::result::Result<Verdict, String> {
    if v.rejected.len() > len {
        return Err(format!("returned {} rejections for a batch of {len}", v.rejected.len()));
    }
    if v.events.len() > len {
        return Err(format!("returned {} sequence events for a batch of {len}", v.events.len()));
    }
    let mut rejected = Vec::with_capacity(v.rejected.len());
    for r in v.rejected {
        let index = r.index as usize;
        if index >= len {
            return Err(format!("rejected record index {index}, outside the batch of {len}"));
        }
        rejected.push(Rejection { index, code: truncate(r.code, 64), message: truncate(r.message, MESSAGE_MAX_BYTES) });
    }
    rejected.sort_by_key(|r| r.index);
    if let Some(w) = rejected.windows(2).find(|w| w[0].index == w[1].index) {
        return Err(format!("rejected record index {} twice", w[0].index));
    }
    let mut events = Vec::with_capacity(v.events.len());
    for e in v.events {
        let index = e.index as usize;
        if index >= len {
            return Err(format!("reported a sequence event at index {index}, outside the batch of {len}"));
        }
        let kind = match e.kind {
            wit::EventKind::Gap => EventKind::Gap,
            wit::EventKind::Duplicate => EventKind::Duplicate,
            wit::EventKind::OutOfOrder => EventKind::OutOfOrder,
            wit::EventKind::Reset => EventKind::Reset,
        };
        events.push(SequenceEvent {
            index,
            kind,
            key: truncate(e.key, 256),
            expected: e.expected,
            received: e.received,
            missing: e.missing,
        });
    }
    Ok(Verdict { rejected, events })
}
