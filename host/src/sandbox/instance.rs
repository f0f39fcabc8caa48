//! One validator instance in its own store: limits, deadline per call, checked verdicts.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use wasmtime::component::{ComponentType, Func, Instance, Lift, ResourceAny, ResourceTable, TypedFunc};
use wasmtime::{ResourceLimiter, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::error::{Error, Result};
use crate::kafka::dlq::CODE_UNDECODABLE;
use crate::pipeline::route::DUPLICATE_CODE;
use crate::sandbox::batch::{BatchInput, Layout};
use crate::sandbox::bindings::{Level, ValidatorPre, wit};
use crate::sandbox::engine::{EPOCH_TICK, GuestEngine};
use crate::sandbox::imports::{DeniedImport, HASH_SEED};
use crate::sandbox::lift::{Item, Listed, Text, TooManyItems, with_item_limit};
use crate::sandbox::{EventKind, FAILED_CODE, ModuleInfo, Rejection, SequenceEvent, Verdict};

/// The WIT package version this host implements.
pub const WIT_VERSION: &str = "0.2.0";

/// Log lines a guest may emit per call, and the longest line kept, in bytes.
const LOG_LINES_PER_CALL: u32 = 16;
pub(crate) const LOG_LINE_MAX_BYTES: usize = 1024;
/// A reason message (or a guest's error) longer than this is cut, so a guest cannot balloon
/// the dead letters or the logs.
const MESSAGE_MAX_BYTES: usize = 1024;
/// Longest rejection code kept, in bytes.
const CODE_MAX_BYTES: usize = 64;
/// Longest sequence key kept, in bytes.
const KEY_MAX_BYTES: usize = 256;
/// Longest module name, version or field name kept, in bytes.
const NAME_MAX_BYTES: usize = 256;
/// Most fields a validator may name in its `reads`; far beyond any market-data schema.
const READS_MAX_FIELDS: usize = 10_000;

/// What one call may make the host copy out of the guest, beyond its state: with at most one
/// rejection and one event per record, each cut to the caps above, a verdict costs the host at
/// most this many bytes per record of the batch (the documented margin over guest memory).
pub const VERDICT_MAX_BYTES_PER_RECORD: usize = CODE_MAX_BYTES + MESSAGE_MAX_BYTES + KEY_MAX_BYTES
    // Three cut marks (`…`, 3 bytes each), and the host's own record for a rejection and an
    // event (index, kind, three numbers, three string headers), rounded up.
    + 3 * 3 + 2 * 64;

/// Store data of one instance: a WASI context that grants nothing (see `imports`), the
/// sandbox limits, the log budget and the instance's place among the process's live ones.
pub struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: SandboxLimits,
    log_budget: u32,
    log_suppressed: u32,
    module: String,
    /// Fixed and per-record parts of a call's time limit, in microseconds.
    call_base_us: u64,
    call_per_record_us: u64,
    _slot: LiveSlot,
}

/// Caps a store's memories and tables together at one byte budget, and the number of core
/// instances, memories and tables it may create; remembers a refusal, so the trap that follows
/// (a guest aborts when allocation fails) can be reported as what it is.
struct SandboxLimits {
    bytes: usize,
    used: usize,
    /// The last growth allowed, (current, desired) in bytes: wasmtime may still fail it (a
    /// memory's own declared maximum), and then it is taken back out of `used`.
    last: Option<(usize, usize)>,
    hit: bool,
}

/// Host resources (stdout and stderr handles, their pollables, errors) one instance may hold
/// at once. Each costs host memory outside the guest's budget, and a guest that asked for
/// stdout in a loop without dropping the handles would otherwise grow the host's table to
/// wasmtime's default of a million entries.
const RESOURCES_MAX: usize = 64;

fn bounded_table() -> ResourceTable {
    let mut table = ResourceTable::new();
    table.set_max_capacity(RESOURCES_MAX);
    table
}

/// Table elements a guest may grow one table to; far beyond what a validator needs.
const TABLE_ELEMENTS_MAX: usize = 1 << 20;
/// What one table element costs the host, for the byte budget: a pointer.
const TABLE_ELEMENT_BYTES: usize = 8;
/// Core instances, memories and tables one store may hold. A Rust validator component uses
/// a few of each (its module, wit-component's shims, one memory); wasmtime's default is 10,000.
const INSTANCES_MAX: usize = 32;
const MEMORIES_MAX: usize = 4;
const TABLES_MAX: usize = 16;

impl SandboxLimits {
    /// Grows one memory or table from `current` to `desired` bytes if the budget allows.
    fn grow(&mut self, current: usize, desired: usize) -> bool {
        let total = self.used.saturating_sub(current).saturating_add(desired);
        let allowed = total <= self.bytes;
        if allowed {
            self.used = total;
            self.last = Some((current, desired));
        }
        self.hit |= !allowed;
        allowed
    }

    /// Takes back the last growth allowed, which did not happen after all.
    fn undo_last(&mut self) {
        if let Some((current, desired)) = self.last.take() {
            self.used = self.used.saturating_sub(desired).saturating_add(current);
        }
    }
}

impl ResourceLimiter for SandboxLimits {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(self.grow(current, desired))
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.undo_last();
        Ok(())
    }

    fn table_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > TABLE_ELEMENTS_MAX {
            self.hit = true;
            return Ok(false);
        }
        Ok(self.grow(current.saturating_mul(TABLE_ELEMENT_BYTES), desired.saturating_mul(TABLE_ELEMENT_BYTES)))
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.undo_last();
        Ok(())
    }

    fn instances(&self) -> usize {
        INSTANCES_MAX
    }

    fn memories(&self) -> usize {
        MEMORIES_MAX
    }

    fn tables(&self) -> usize {
        TABLES_MAX
    }
}

/// One of the process's live validator instances (`wasm.max_instances`); frees its place when
/// the store that holds it is dropped.
pub(crate) struct LiveSlot(Arc<AtomicUsize>);

impl LiveSlot {
    /// Takes a place among at most `max`, or says how many are live.
    pub(crate) fn take(live: &Arc<AtomicUsize>, max: usize) -> std::result::Result<Self, usize> {
        live.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .map(|_| Self(Arc::clone(live)))
    }
}

impl Drop for LiveSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl GuestState {
    pub(crate) fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    pub(crate) fn wasi(&mut self) -> &mut WasiCtx {
        &mut self.wasi
    }

    /// The host's `log` import: through the host's logger, within the per-call budget.
    pub(crate) fn log(&mut self, level: Level, message: &str) {
        if self.log_budget == 0 {
            self.log_suppressed += 1;
            return;
        }
        self.log_budget -= 1;
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

/// Why a guest's results lift as [`Text`] and [`Listed`]: see `lift`.
type Message = Text<MESSAGE_MAX_BYTES>;

#[derive(ComponentType, Lift)]
#[component(record)]
struct RawModuleInfo {
    name: Text<NAME_MAX_BYTES>,
    version: Text<NAME_MAX_BYTES>,
    #[component(name = "wit-version")]
    wit_version: Text<NAME_MAX_BYTES>,
}

#[derive(ComponentType, Lift)]
#[component(record)]
struct RawReads {
    fields: Option<Listed<Text<NAME_MAX_BYTES>>>,
    kafka: wit::KafkaMetadata,
}

#[derive(ComponentType, Lift)]
#[component(record)]
struct RawRejection {
    index: u32,
    code: Text<CODE_MAX_BYTES>,
    message: Message,
}

#[derive(ComponentType, Lift)]
#[component(record)]
struct RawEvent {
    index: u32,
    kind: wit::EventKind,
    key: Text<KEY_MAX_BYTES>,
    expected: i64,
    received: i64,
    missing: i64,
}

#[derive(ComponentType, Lift)]
#[component(record)]
struct RawVerdict {
    rejected: Listed<RawRejection>,
    events: Listed<RawEvent>,
}

impl Item for Text<NAME_MAX_BYTES> {
    const NOUN: &'static str = "field names";
}

impl Item for RawRejection {
    const NOUN: &'static str = "rejections";
}

impl Item for RawEvent {
    const NOUN: &'static str = "sequence events";
}

type InfoFn = TypedFunc<(), (RawModuleInfo,)>;
type CreateFn = TypedFunc<(Vec<(String, String)>,), (std::result::Result<ResourceAny, Message>,)>;
type ReadsFn = TypedFunc<(ResourceAny,), (RawReads,)>;
type ValidateFn<'a> = TypedFunc<(ResourceAny, &'a wit::Batch<'a>), (std::result::Result<RawVerdict, Message>,)>;
/// The state is committed whole, so it is copied whole; guest memory bounds it.
type SnapshotFn = TypedFunc<(ResourceAny,), (Vec<u8>,)>;
type RestoreFn<'a> = TypedFunc<(ResourceAny, &'a [u8]), (std::result::Result<(), Message>,)>;

/// The component's exports, typed with the bounded lifts above instead of the generated
/// bindings (which copy every string whole).
struct Exports {
    info: InfoFn,
    create: CreateFn,
    reads: ReadsFn,
    validate: Func,
    snapshot: SnapshotFn,
    restore: Func,
}

impl Exports {
    fn new(store: &mut Store<GuestState>, instance: &Instance) -> std::result::Result<Self, String> {
        let interface = format!("k2:ingest/validation@{WIT_VERSION}");
        let iface = instance
            .get_export_index(&mut *store, None, &interface)
            .ok_or_else(|| format!("does not export {interface}"))?;
        let mut func = |name: &str| {
            let index = instance
                .get_export_index(&mut *store, Some(&iface), name)
                .ok_or_else(|| format!("does not export {interface}#{name}"))?;
            instance.get_func(&mut *store, index).ok_or_else(|| format!("{interface}#{name} is not a function"))
        };
        let (info, create, reads, validate, snapshot, restore) = (
            func("info")?,
            func("[static]validator.create")?,
            func("[method]validator.reads")?,
            func("[method]validator.validate")?,
            func("[method]validator.snapshot")?,
            func("[method]validator.restore")?,
        );
        let typed = |name: &str, e: wasmtime::Error| format!("{interface}#{name} has the wrong type: {e:#}");
        // The two with borrowed parameters are checked here once and typed again per call.
        validate
            .typed::<(ResourceAny, &wit::Batch<'static>), _>(&*store)
            .map(|_: ValidateFn<'static>| ())
            .map_err(|e| typed("validate", e))?;
        restore
            .typed::<(ResourceAny, &[u8]), _>(&*store)
            .map(|_: RestoreFn<'static>| ())
            .map_err(|e| typed("restore", e))?;
        Ok(Self {
            info: info.typed(&*store).map_err(|e| typed("info", e))?,
            create: create.typed(&*store).map_err(|e| typed("create", e))?,
            reads: reads.typed(&*store).map_err(|e| typed("reads", e))?,
            validate,
            snapshot: snapshot.typed(&*store).map_err(|e| typed("snapshot", e))?,
            restore,
        })
    }

    fn validate<'a>(&self) -> ValidateFn<'a> {
        // SAFETY: `new` type-checked this function against the same types with other lifetimes.
        unsafe { TypedFunc::new_unchecked(self.validate) }
    }

    fn restore<'a>(&self) -> RestoreFn<'a> {
        // SAFETY: as for `validate`.
        unsafe { TypedFunc::new_unchecked(self.restore) }
    }
}

/// A live validator for one topic-partition. After any error it is poisoned: drop it
/// and build a new one from the last committed state.
pub struct ValidatorInstance {
    store: Store<GuestState>,
    exports: Exports,
    resource: ResourceAny,
    path: PathBuf,
    info: ModuleInfo,
    /// What the validator reads, and conversion buffers reused by every call.
    layout: Layout,
}

/// A fresh store with the engine's limits, the component instantiated in it, and its info
/// checked against the WIT version this host implements.
fn start(
    engine: &GuestEngine,
    pre: &ValidatorPre<GuestState>,
    path: &Path,
) -> Result<(Store<GuestState>, Exports, ModuleInfo)> {
    let limits = engine.limits();
    let err = |message: String| Error::Guest { module: path.to_path_buf(), message };
    let slot = LiveSlot::take(engine.live_instances(), limits.max_instances).map_err(|live| {
        err(format!("cannot start another validator instance: {live} are live, the most `wasm.max_instances` allows"))
    })?;
    let base_us = limits.call_timeout_ms.saturating_mul(1000);
    let state = GuestState {
        wasi: WasiCtx::builder().insecure_random_seed(HASH_SEED).build(),
        table: bounded_table(),
        limits: SandboxLimits { bytes: limits.memory_limit_bytes, used: 0, last: None, hit: false },
        log_budget: LOG_LINES_PER_CALL,
        log_suppressed: 0,
        module: path.display().to_string(),
        call_base_us: base_us,
        call_per_record_us: limits.call_timeout_per_record_us,
        _slot: slot,
    };
    let mut store = Store::new(engine.engine(), state);
    store.limiter(|s| &mut s.limits);
    store.epoch_deadline_trap();
    store.set_epoch_deadline(ticks(base_us));
    let instance = off_executor(|| pre.instance_pre().instantiate(&mut store))
        .map_err(|e| err(format!("cannot instantiate: {}", describe_trap(&e, store.data(), base_us))))?;
    let exports = Exports::new(&mut store, &instance).map_err(err)?;
    let (info,) = off_executor(|| with_item_limit(0, || exports.info.call(&mut store, ())))
        .map_err(|e| err(format!("trapped in info: {}", describe_trap(&e, store.data(), base_us))))?;
    let info = ModuleInfo { name: info.name.0, version: info.version.0, wit_version: info.wit_version.0 };
    if info.wit_version != WIT_VERSION {
        return Err(err(format!("built for k2:ingest@{}, this host implements @{WIT_VERSION}", info.wit_version)));
    }
    Ok((store, exports, info))
}

/// Name and versions the module at `path` reports, from a throwaway instance.
pub(crate) fn info(engine: &GuestEngine, pre: &ValidatorPre<GuestState>, path: &Path) -> Result<ModuleInfo> {
    start(engine, pre, path).map(|(_, _, info)| info)
}

impl ValidatorInstance {
    pub(crate) fn new(
        engine: &GuestEngine,
        pre: &ValidatorPre<GuestState>,
        path: &Path,
        settings: &[(String, String)],
    ) -> Result<Self> {
        let (mut store, exports, info) = start(engine, pre, path)?;
        let base_us = store.data().call_base_us;
        let err = |message: String| Error::Guest { module: path.to_path_buf(), message };
        store.set_epoch_deadline(ticks(base_us));
        let (created,) = off_executor(|| with_item_limit(0, || exports.create.call(&mut store, (settings.to_vec(),))))
            .map_err(|e| err(format!("trapped in create: {}", describe_trap(&e, store.data(), base_us))))?;
        let resource = created.map_err(|e| err(format!("refused its settings: {}", e.0)))?;
        store.set_epoch_deadline(ticks(base_us));
        let (reads,) =
            off_executor(|| with_item_limit(READS_MAX_FIELDS, || exports.reads.call(&mut store, (resource,))))
                .map_err(|e| match e.downcast_ref::<TooManyItems>() {
                    Some(many) => err(format!(
                        "asked to read {} fields, more than the {READS_MAX_FIELDS} a validator may name",
                        many.count
                    )),
                    None => err(format!("trapped in reads: {}", describe_trap(&e, store.data(), base_us))),
                })?;
        let reads = wit::Reads {
            fields: reads.fields.map(|names| names.0.into_iter().map(|name| name.0).collect()),
            kafka: reads.kafka,
        };
        let layout = Layout::new(reads);
        Ok(Self { store, exports, resource, path: path.to_path_buf(), info, layout })
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
        let (validate, store, resource) = (self.exports.validate(), &mut self.store, self.resource);
        // At most one rejection and one event per record: a longer list is refused unread.
        let result = off_executor(|| with_item_limit(len, || validate.call(store, (resource, &batch))));
        let suppressed = self.store.data().log_suppressed;
        if suppressed > 0 {
            tracing::warn!(module = %self.path.display(), suppressed, "guest log lines over the per-call budget were dropped");
        }
        let first = input.offsets.first().copied().unwrap_or(-1);
        let (verdict,) = result.map_err(|e| {
            if let Some(many) = e.downcast_ref::<TooManyItems>() {
                let message = format!("returned {} {} for a batch of {len}, refused unread", many.count, many.noun);
                return CallFailure::new(FailureKind::BadVerdict, self.err(message));
            }
            let message = format!(
                "trapped in validate (partition {}, offsets {first}..): {}",
                input.partition,
                describe_trap(&e, self.store.data(), budget_us)
            );
            CallFailure::new(FailureKind::Trapped, self.err(message))
        })?;
        let verdict = verdict.map_err(|e| {
            let message = format!("failed a batch (partition {}): {}", input.partition, e.0);
            CallFailure::new(FailureKind::Refused, self.err(message))
        })?;
        check_verdict(verdict, len).map_err(|m| CallFailure::new(FailureKind::BadVerdict, self.err(m)))
    }

    /// The guest's state, to commit with the data.
    pub fn snapshot(&mut self) -> Result<Vec<u8>> {
        let budget_us = self.call_budget_us(0);
        self.store.set_epoch_deadline(ticks(budget_us));
        let (snapshot, store, resource) = (&self.exports.snapshot, &mut self.store, self.resource);
        off_executor(|| with_item_limit(0, || snapshot.call(store, (resource,))))
            .map(|(state,)| state)
            .map_err(|e| self.err(format!("trapped in snapshot: {}", describe_trap(&e, self.store.data(), budget_us))))
    }

    /// Replaces the guest's state with a committed snapshot.
    pub fn restore(&mut self, state: &[u8]) -> Result<()> {
        let budget_us = self.call_budget_us(0);
        self.store.set_epoch_deadline(ticks(budget_us));
        let (restore, store, resource) = (self.exports.restore(), &mut self.store, self.resource);
        let (restored,) =
            off_executor(|| with_item_limit(0, || restore.call(store, (resource, state)))).map_err(|e| {
                self.err(format!("trapped in restore: {}", describe_trap(&e, self.store.data(), budget_us)))
            })?;
        restored.map_err(|e| self.err(format!("refused its saved state: {}", e.0)))
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
        None => match e.downcast_ref::<DeniedImport>() {
            Some(denied) => denied.to_string(),
            None => e.root_cause().to_string(),
        },
    }
}

/// Epoch ticks covering `micros`, at least one.
fn ticks(micros: u64) -> u64 {
    (micros / EPOCH_TICK.as_micros() as u64).max(1) + 1
}

/// Reason codes the host gives records itself: a validator using one would pass its rejection
/// off as the host's (a dead letter reading `undecodable`, a record set aside as a duplicate).
const HOST_CODES: &[&str] = &[CODE_UNDECODABLE, DUPLICATE_CODE, FAILED_CODE];

/// Checks a guest's verdict against the batch: indices in range, each rejected once, no host
/// code, no more events than records. Sorts rejections by index.
fn check_verdict(v: RawVerdict, len: usize) -> std::result::Result<Verdict, String> {
    let (v_rejected, v_events) = (v.rejected.0, v.events.0);
    if v_rejected.len() > len {
        return Err(format!("returned {} rejections for a batch of {len}", v_rejected.len()));
    }
    if v_events.len() > len {
        return Err(format!("returned {} sequence events for a batch of {len}", v_events.len()));
    }
    let mut rejected = Vec::with_capacity(v_rejected.len());
    for r in v_rejected {
        let index = r.index as usize;
        if index >= len {
            return Err(format!("rejected record index {index}, outside the batch of {len}"));
        }
        if HOST_CODES.contains(&r.code.0.as_str()) {
            return Err(format!(
                "rejected record index {index} with the host's own code `{}`; a validator must use codes of its own",
                r.code.0
            ));
        }
        rejected.push(Rejection { index, code: r.code.0, message: r.message.0 });
    }
    rejected.sort_by_key(|r| r.index);
    if let Some(w) = rejected.windows(2).find(|w| w[0].index == w[1].index) {
        return Err(format!("rejected record index {} twice", w[0].index));
    }
    let mut events = Vec::with_capacity(v_events.len());
    for e in v_events {
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
            key: e.key.0,
            expected: e.expected,
            received: e.received,
            missing: e.missing,
        });
    }
    Ok(Verdict { rejected, events })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Rejections as (index, code), events as index, against a batch of `len`.
    fn raw(rejected: &[(u32, &str)], events: &[u32]) -> RawVerdict {
        let rejected = rejected
            .iter()
            .map(|&(index, code)| RawRejection { index, code: Text(code.into()), message: Text("m".into()) })
            .collect();
        let events = events
            .iter()
            .map(|&index| RawEvent {
                index,
                kind: wit::EventKind::Gap,
                key: Text("XNAS:AAPL".into()),
                expected: 2,
                received: 4,
                missing: 2,
            })
            .collect();
        RawVerdict { rejected: Listed(rejected), events: Listed(events) }
    }

    /// What the check must conclude, written as plainly as possible.
    fn acceptable(len: usize, rejected: &[(u32, &str)], events: &[u32]) -> bool {
        let mut seen = std::collections::HashSet::new();
        rejected.len() <= len
            && events.len() <= len
            && rejected.iter().all(|&(i, code)| (i as usize) < len && seen.insert(i) && !HOST_CODES.contains(&code))
            && events.iter().all(|&i| (i as usize) < len)
    }

    proptest! {
        // The check is the last line between a guest and the pipeline: it must never panic,
        // accept exactly what the plain model accepts, and hand on sorted, in-range indices.
        #[test]
        fn the_verdict_check_accepts_exactly_the_well_formed_verdicts(
            len in 0usize..12,
            rejected in proptest::collection::vec(
                (0u32..16, prop::sample::select(vec!["bad-price", "x", "undecodable", "sequence-duplicate", "validator-failed"])),
                0..14,
            ),
            events in proptest::collection::vec(prop_oneof![0u32..16, Just(u32::MAX)], 0..14),
        ) {
            let expected = acceptable(len, &rejected, &events);
            match check_verdict(raw(&rejected, &events), len) {
                Ok(v) => {
                    prop_assert!(expected, "accepted a malformed verdict: {rejected:?} {events:?} for {len}");
                    prop_assert!(v.rejected.windows(2).all(|w| w[0].index < w[1].index));
                    prop_assert!(v.rejected.iter().all(|r| r.index < len));
                    prop_assert!(v.events.iter().all(|e| e.index < len));
                    prop_assert_eq!(v.rejected.len(), rejected.len());
                    prop_assert_eq!(v.events.len(), events.len());
                }
                Err(message) => prop_assert!(!expected, "refused a well-formed verdict: {message}"),
            }
        }
    }

    fn limits(bytes: usize) -> SandboxLimits {
        SandboxLimits { bytes, used: 0, last: None, hit: false }
    }

    #[test]
    fn a_growth_wasmtime_then_fails_is_taken_back() {
        let mut l = limits(100);
        assert!(l.memory_growing(0, 10, None).unwrap());
        assert!(l.memory_growing(10, 90, None).unwrap());
        l.memory_grow_failed(wasmtime::format_err!("over the memory's own maximum")).unwrap();
        assert_eq!(l.used, 10, "only the growth that happened counts");
        assert!(l.memory_growing(10, 100, None).unwrap(), "the budget is still there");
    }

    #[test]
    fn a_guest_cannot_hold_more_than_a_few_host_resources() {
        let mut table = bounded_table();
        for _ in 0..RESOURCES_MAX {
            table.push(()).unwrap();
        }
        assert!(table.push(()).is_err());
    }

    #[test]
    fn all_memories_and_tables_of_an_instance_share_one_budget() {
        let mut l = limits(100);
        assert!(l.memory_growing(0, 60, None).unwrap(), "first memory");
        assert!(!l.memory_growing(0, 60, None).unwrap(), "a second memory may not take the budget again");
        assert!(l.hit);
        assert!(l.memory_growing(0, 40, None).unwrap(), "what is left");
        assert!(!l.table_growing(0, 1, None).unwrap(), "tables count too: 8 bytes an element");
        assert_eq!(l.used, 100);
    }

    #[test]
    fn growing_one_memory_counts_only_the_growth() {
        let mut l = limits(100);
        assert!(l.memory_growing(0, 50, None).unwrap());
        assert!(l.memory_growing(50, 100, None).unwrap());
        assert!(!l.memory_growing(100, 101, None).unwrap());
        assert_eq!(l.used, 100);
    }

    #[test]
    fn tables_are_capped_in_elements_and_bytes() {
        let mut l = limits(usize::MAX);
        assert!(!l.table_growing(0, TABLE_ELEMENTS_MAX + 1, None).unwrap());
        assert!(l.table_growing(0, 10, None).unwrap());
        assert_eq!(l.used, 10 * TABLE_ELEMENT_BYTES);
    }

    #[test]
    fn live_slots_are_bounded_and_freed_on_drop() {
        let live = Arc::new(AtomicUsize::new(0));
        let a = LiveSlot::take(&live, 2).unwrap();
        let _b = LiveSlot::take(&live, 2).unwrap();
        assert_eq!(LiveSlot::take(&live, 2).err(), Some(2));
        drop(a);
        assert!(LiveSlot::take(&live, 2).is_ok());
        assert_eq!(live.load(Ordering::Acquire), 1, "the slot taken in the line above was dropped");
    }
}
