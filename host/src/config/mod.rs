//! The TOML configuration: typed, documented, strict about unknown keys, with env overrides.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

mod catalog;
mod maintenance;
mod partition;
mod redact;
mod registry;
pub use catalog::*;
pub use maintenance::MaintenanceConfig;
pub use partition::PartitionField;
pub use redact::{REDACTED, redact_url};
pub use registry::*;

/// Environment variables that override the config file, for CI and containers.
pub const ENV_BOOTSTRAP: &str = "K2_KAFKA_BOOTSTRAP";
pub const ENV_GROUP_ID: &str = "K2_KAFKA_GROUP_ID";
pub const ENV_GROUP_INSTANCE_ID: &str = "K2_KAFKA_GROUP_INSTANCE_ID";

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Kafka connection and consumer group.
    pub kafka: KafkaConfig,
    /// Where the Iceberg tables live.
    pub catalog: CatalogConfig,
    /// The schema registry that Confluent-framed topics take writer schemas from. Default:
    /// none (writer schemas come from each topic's `schema_ids` files).
    #[serde(default)]
    pub registry: Option<RegistryConfig>,
    /// Batching and bounded-run behaviour.
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// When accumulated data is committed to Iceberg: at whichever of these limits is reached
    /// first, and at the end of a bounded run. A batch is not a commit: see `pipeline.batch_records`.
    #[serde(default)]
    pub commit: CommitConfig,
    /// Data file settings.
    #[serde(default)]
    pub sink: SinkConfig,
    /// Sandbox limits for validator modules.
    #[serde(default)]
    pub wasm: WasmConfig,
    /// Table upkeep: snapshot expiry and the deletion of the files only expired snapshots referenced.
    #[serde(default)]
    pub maintenance: MaintenanceConfig,
    /// One entry per Kafka topic to ingest.
    #[serde(default)]
    pub topics: Vec<TopicConfig>,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Broker list, `host:port[,host:port]`. Env override: `K2_KAFKA_BOOTSTRAP`.
    pub bootstrap_servers: String,
    /// Consumer group id. Env override: `K2_KAFKA_GROUP_ID`. Default `k2-ingest`.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Static membership (KIP-345): a name for this instance that stays the same across its
    /// restarts and differs from every other instance of the group, e.g. the host or pod name.
    /// A restart within `session.timeout.ms` then takes its partitions back at once, without a
    /// rebalance and without waiting for the dead process's session to expire. Two running
    /// instances with one name fence each other. Env override: `K2_KAFKA_GROUP_INSTANCE_ID`.
    /// Default: none (dynamic membership: after a crash the restart waits out the old session).
    #[serde(default)]
    pub group_instance_id: Option<String>,
    /// Where a partition with no offset in the table or the group starts: `earliest` (the
    /// log's start) or `latest` (its end), as read from the broker at assignment. Never applied
    /// to an offset out of range, as librdkafka's own setting would be without a word: records
    /// deleted before they were read follow `topics[].on_offset_lost`, and an offset past the
    /// log's end (the topic recreated) stops the topic. Default `earliest`, so a new group loses
    /// nothing already in the topic.
    #[serde(default)]
    pub auto_offset_reset: OffsetReset,
    /// Longest wait for one poll of the broker, in milliseconds. Default 100.
    #[serde(default = "default_poll_timeout_ms")]
    pub poll_timeout_ms: u64,
    /// Extra librdkafka properties passed through as is (e.g. `"security.protocol" = "SSL"`).
    /// Offset handling keys (`enable.auto.commit`, `enable.auto.offset.store`,
    /// `auto.offset.reset`) and `group.id`, `bootstrap.servers` are ours and refused. Unless set here, k2-ingest's consumer uses
    /// `fetch.queue.backoff.ms = 20` and `queued.min.messages = 30000` instead of librdkafka's
    /// defaults, which leave a fast consumer idle (see docs/performance.md). Default: none.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

// Option values stay out of debug output (error reports, `--log` at debug level): they hold
// `sasl.password`, `ssl.key.password`, `sasl.oauthbearer.config` and more, under names no list
// can foresee, so every value is hidden and only the keys show.
impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("group_id", &self.group_id)
            .field("group_instance_id", &self.group_instance_id)
            .field("auto_offset_reset", &self.auto_offset_reset)
            .field("poll_timeout_ms", &self.poll_timeout_ms)
            .field("options", &self.options.keys().map(|k| (k, REDACTED)).collect::<BTreeMap<_, _>>())
            .finish()
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OffsetReset {
    #[default]
    Earliest,
    Latest,
}

impl OffsetReset {
    pub fn as_str(self) -> &'static str {
        match self {
            OffsetReset::Earliest => "earliest",
            OffsetReset::Latest => "latest",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Records handed to a validator per call and appended to the writer at once: the unit of
    /// work, not of commits (those follow `[commit]`, so a fast stream does not make a snapshot
    /// per batch). Default 1000; at least 1.
    #[serde(default = "default_batch_records")]
    pub batch_records: usize,
    /// A bounded run stops when no message arrived for this long, in milliseconds. Default 5000.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// After SIGINT/SIGTERM, the longest the final commit may take before the process
    /// exits anyway (uncommitted data is then read again on restart), in milliseconds; a second
    /// signal exits at once. Default 30000.
    #[serde(default = "default_shutdown_timeout_ms")]
    pub shutdown_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitConfig {
    /// Commit once this many records are written since the last commit. Default 1,000,000; at least 1.
    #[serde(default = "default_commit_records")]
    pub max_records: u64,
    /// Commit once this many bytes (in memory, Arrow) are written since the last commit.
    /// Default 268435456 (256 MiB); at least 1.
    #[serde(default = "default_commit_bytes")]
    pub max_bytes: u64,
    /// Commit at least this often while data flows, in milliseconds. Default 60000; at least 1.
    #[serde(default = "default_commit_interval_ms")]
    pub interval_ms: u64,
    /// How long a commit that failed for a reason other than a conflict (catalog or object
    /// store unreachable, a 5xx, a timeout, a locked database) is tried again, in
    /// milliseconds, waiting 1 s after the first failure and twice as long after each next
    /// one, at most 30 s. A commit whose outcome is unknown is never applied twice: each
    /// carries a unique id in its snapshot summary, looked for before it is tried again.
    /// The run stops once this has passed; 0 stops at the first failure. The broker's answer
    /// to the topic-id check before a commit waits the same way, without a budget while the
    /// run goes on (the commit is put off), within this one for a run's final commit.
    /// Default 300000.
    #[serde(default = "default_commit_retry_timeout_ms")]
    pub retry_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// A data file is closed and a new one started past this size, in bytes. Default 536870912
    /// (512 MiB); at least 1.
    #[serde(default = "default_target_file_size")]
    pub target_file_size_bytes: usize,
    /// Parquet compression: `zstd`, `snappy` or `none`. Default `zstd`.
    #[serde(default)]
    pub compression: Compression,
    /// Add `_kafka_partition`, `_kafka_offset` and `_kafka_timestamp` columns to new tables. Default true.
    #[serde(default = "default_true")]
    pub metadata_columns: bool,
    /// Data files open at once per topic in a partitioned table; past it the least recently
    /// written is closed (its file is committed with the rest) and reopened if needed. Each
    /// open file buffers up to a row group in memory. Default 32; at least 1.
    #[serde(default = "default_max_open_writers")]
    pub max_open_writers: usize,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Zstd,
    Snappy,
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WasmConfig {
    /// Memory a validator instance may grow to, in bytes: all its linear memories and tables
    /// together. Default 67108864 (64 MiB).
    #[serde(default = "default_memory_limit")]
    pub memory_limit_bytes: usize,
    /// Validator instances the process may hold at once (one per assigned topic-partition,
    /// plus a short-lived one while a module is checked or restarted), so guest memory stays
    /// within `max_instances × memory_limit_bytes`. Default 1024.
    #[serde(default = "default_max_instances")]
    pub max_instances: usize,
    /// Fixed part of the time a validator call may take, in milliseconds. Default 1000.
    #[serde(default = "default_call_timeout_ms")]
    pub call_timeout_ms: u64,
    /// Added to the call time limit per record of the batch, in microseconds. Default 50,
    /// so a 1,000-record batch may take 1.05 s.
    #[serde(default = "default_per_record_us")]
    pub call_timeout_per_record_us: u64,
    /// Under the `isolate` policy, the wait before re-instantiating a validator once records
    /// fail one after another with no good call between them, in milliseconds: the first such
    /// restart is immediate, the next waits this long, each further one twice as long.
    /// Default 100.
    #[serde(default = "default_restart_backoff_ms")]
    pub restart_backoff_ms: u64,
    /// The longest such wait, in milliseconds. Default 10000.
    #[serde(default = "default_restart_backoff_max_ms")]
    pub restart_backoff_max_ms: u64,
    /// Keep compiled modules on disk so a restart skips compilation. Default true.
    #[serde(default = "default_true")]
    pub cache: bool,
    /// Folder of the compiled-module cache. Relative paths are relative to the config file.
    /// Default `$XDG_CACHE_HOME/k2-ingest/modules`, else `~/.cache/k2-ingest/modules`.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// What wasmtime tells a native profiler about compiled validator code, for profiling
    /// validators: `none`; `perfmap` writes `/tmp/perf-PID.map` so `perf report` names guest
    /// functions; `jitdump` writes the machine code too, for `perf inject --jit` and
    /// `perf annotate`. Default `none`: both write files for as long as the process runs.
    #[serde(default)]
    pub profiler: Profiler,
}

/// The `[wasm] profiler` setting.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Profiler {
    #[default]
    None,
    PerfMap,
    JitDump,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    /// Kafka topic name.
    pub name: String,
    /// Iceberg table name within the catalog's namespace. Default: the topic name with
    /// `.` replaced by `_`. Must not end in `__k2_rollback` (kept for rollbacks).
    #[serde(default)]
    pub table: Option<String>,
    /// Avro schema file (.avsc) of the table, and of plain bodies. Relative to the config file.
    /// With `confluent` framing it is the table's starting shape: writer schemas that add
    /// optional fields or widen int → long and float → double evolve the table. Required,
    /// except for `confluent` topics with a `[registry]`, which start from the latest version
    /// of `subject`.
    #[serde(default)]
    pub schema: Option<PathBuf>,
    /// Registry subject whose latest version is the table's starting schema when `schema` is
    /// not set, and that every schema id fetched from the registry must be registered under.
    /// Default `<name>-value` (Confluent's topic name strategy).
    #[serde(default)]
    pub subject: Option<String>,
    /// Accept schema ids the registry holds under subjects other than `subject` (record name
    /// strategies, or one subject shared by several topics). Default `false`: a record whose
    /// id no version of `subject` holds was written for another topic, and is undecodable.
    /// Ids in `schema_ids` are used as configured either way.
    #[serde(default)]
    pub allow_other_subjects: bool,
    /// How message bodies are framed: `plain` (bare Avro datum) or `confluent`
    /// (`0x00`, 4-byte big-endian schema id, datum). Default `plain`.
    #[serde(default)]
    pub framing: Framing,
    /// For `confluent` framing: schema id → writer schema file. Records are resolved from
    /// their writer schema to the table's schema. Ids not listed here are fetched from
    /// `[registry]`. Default: empty.
    #[serde(default)]
    pub schema_ids: BTreeMap<String, PathBuf>,
    /// The validator component for this topic; absent means every decoded record is accepted.
    #[serde(default)]
    pub validator: Option<ValidatorConfig>,
    /// Records that do not decode or that the validator rejects: `dlq` sends them to the
    /// dead-letter topic (acknowledged before the source offsets are committed), `skip`
    /// only counts and logs them, `fail` stops the topic without committing. Default `dlq`.
    #[serde(default)]
    pub on_invalid: InvalidPolicy,
    /// Records a validator reports as sequence duplicates: `keep` writes them to the table
    /// (the event is still reported), `drop` leaves them out, `dlq` sends them to the
    /// dead-letter topic instead of the table. Default `keep`: the table stays a faithful
    /// copy of the feed, and the event says which rows repeat.
    #[serde(default)]
    pub on_duplicate: DuplicatePolicy,
    /// Sequence gaps: `log` reports them (warning, summary) and goes on; `fail` stops the
    /// topic at the batch with the gap, without committing it. Default `log`.
    #[serde(default)]
    pub on_gap: GapPolicy,
    /// Records deleted from the log (retention, `delete-records`) before k2-ingest read them,
    /// found when a partition is assigned at a table offset below the log's start: `fail`
    /// stops the topic naming the partitions and how many records each lost; `skip` goes on
    /// from the log's start, logs the loss, counts it (`k2_records_lost_total`) and records
    /// the ranges in the table (summary key `k2.lost.<topic>`, shown by `status`). Default `fail`.
    #[serde(default)]
    pub on_offset_lost: OffsetLostPolicy,
    /// The dead-letter topic (created with one partition and the cluster's default replication
    /// factor if missing). Default `<name>.dlq`.
    /// Refused, the default too, if it is a source topic of this config: dead letters must not
    /// be read back as input.
    #[serde(default)]
    pub dlq_topic: Option<String>,
    /// Iceberg table of the sequence events the validator reports, in the catalog's
    /// namespace (created if missing). Default `<table>_events`. Refused, the default too, if it
    /// is the data table of a topic of this config.
    #[serde(default)]
    pub events_table: Option<String>,
    /// How the table is partitioned when k2-ingest creates it, e.g.
    /// `["day(exchange_ts)", "symbol", "bucket(16, trade_id)", "truncate(4, symbol)"]`
    /// (also `year`, `month`, `hour`, `identity(column)`). An existing table must already be
    /// partitioned this way (see docs/schemas.md, Partitioning). Default: not partitioned.
    #[serde(default)]
    pub partition_by: Vec<PartitionField>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InvalidPolicy {
    #[default]
    Dlq,
    Skip,
    Fail,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DuplicatePolicy {
    #[default]
    Keep,
    Drop,
    Dlq,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum GapPolicy {
    #[default]
    Log,
    Fail,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OffsetLostPolicy {
    #[default]
    Fail,
    Skip,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Framing {
    #[default]
    Plain,
    Confluent,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidatorConfig {
    /// Path of the validator component (.wasm). Relative to the config file.
    pub module: PathBuf,
    /// String settings handed to the validator's `create`, e.g. `future_tolerance_ms = "5000"`.
    /// Default: none.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    /// What a failed validator call (trap, deadline, memory limit, bad verdict) does:
    /// `fail` stops the topic without committing the batch's offsets; `isolate` re-runs the
    /// batch in halves on fresh instances restored to the last good state, and rejects only
    /// the records it fails on (code `validator-failed`). Default `fail`.
    #[serde(default)]
    pub on_failure: FailurePolicy,
    /// Hex sha256 the module file must have; if it differs, the topic does not start.
    /// Default: not pinned. `k2-ingest module list` shows the current hash.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Under `isolate`, the most records of one batch that may be rejected for failing the
    /// validator; beyond that the module, not the data, is taken to be broken and the topic
    /// stops. Default 10.
    #[serde(default = "default_isolate_max_records")]
    pub isolate_max_records: usize,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FailurePolicy {
    #[default]
    Fail,
    Isolate,
}

fn default_group_id() -> String {
    "k2-ingest".into()
}
fn default_poll_timeout_ms() -> u64 {
    100
}
fn default_batch_records() -> usize {
    1000
}
fn default_idle_timeout_ms() -> u64 {
    5000
}
fn default_shutdown_timeout_ms() -> u64 {
    30_000
}
fn default_commit_records() -> u64 {
    1_000_000
}
fn default_commit_bytes() -> u64 {
    256 << 20
}
fn default_commit_interval_ms() -> u64 {
    60_000
}
fn default_commit_retry_timeout_ms() -> u64 {
    300_000
}
fn default_target_file_size() -> usize {
    512 << 20
}
fn default_true() -> bool {
    true
}
fn default_memory_limit() -> usize {
    64 << 20
}
fn default_call_timeout_ms() -> u64 {
    1000
}
fn default_per_record_us() -> u64 {
    50
}
fn default_restart_backoff_ms() -> u64 {
    100
}
fn default_max_instances() -> usize {
    1024
}
fn default_restart_backoff_max_ms() -> u64 {
    10_000
}
fn default_isolate_max_records() -> usize {
    10
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            batch_records: default_batch_records(),
            idle_timeout_ms: default_idle_timeout_ms(),
            shutdown_timeout_ms: default_shutdown_timeout_ms(),
        }
    }
}
impl Default for CommitConfig {
    fn default() -> Self {
        Self {
            max_records: default_commit_records(),
            max_bytes: default_commit_bytes(),
            interval_ms: default_commit_interval_ms(),
            retry_timeout_ms: default_commit_retry_timeout_ms(),
        }
    }
}
fn default_max_open_writers() -> usize {
    32
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            target_file_size_bytes: default_target_file_size(),
            compression: Compression::default(),
            metadata_columns: true,
            max_open_writers: default_max_open_writers(),
        }
    }
}
impl Default for WasmConfig {
    fn default() -> Self {
        Self {
            memory_limit_bytes: default_memory_limit(),
            max_instances: default_max_instances(),
            call_timeout_ms: default_call_timeout_ms(),
            call_timeout_per_record_us: default_per_record_us(),
            restart_backoff_ms: default_restart_backoff_ms(),
            restart_backoff_max_ms: default_restart_backoff_max_ms(),
            cache: true,
            cache_dir: None,
            profiler: Profiler::default(),
        }
    }
}

impl TopicConfig {
    /// The dead-letter topic of this topic.
    pub fn dlq_topic(&self) -> String {
        self.dlq_topic.clone().unwrap_or_else(|| format!("{}.dlq", self.name))
    }

    /// The sequence-events table of this topic.
    pub fn events_table_name(&self) -> String {
        self.events_table.clone().unwrap_or_else(|| format!("{}_events", self.table_name()))
    }

    /// Whether any policy sends records to the dead-letter topic.
    pub fn uses_dlq(&self) -> bool {
        self.on_invalid == InvalidPolicy::Dlq || self.on_duplicate == DuplicatePolicy::Dlq
    }

    /// The registry subject of the topic's starting schema.
    pub fn subject(&self) -> String {
        self.subject.clone().unwrap_or_else(|| format!("{}-value", self.name))
    }

    /// The Iceberg table name for this topic.
    pub fn table_name(&self) -> String {
        self.table.clone().unwrap_or_else(|| self.name.replace('.', "_"))
    }
}

impl Config {
    /// Reads, overrides from the environment, resolves paths and validates `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config { path: path.to_path_buf(), message: format!("cannot read: {e}") })?;
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Self::parse(&text, path, env)
    }

    /// Parses `text` (read from `path`) with `env` supplying overrides.
    pub fn parse(text: &str, path: &Path, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let err = |message: String| Error::Config { path: path.to_path_buf(), message };
        let mut config: Config = toml::from_str(text).map_err(|e| err(plain_types(e.to_string().trim_end())))?;

        if let Some(v) = env(ENV_BOOTSTRAP) {
            config.kafka.bootstrap_servers = v;
        }
        if let Some(v) = env(ENV_GROUP_ID) {
            config.kafka.group_id = v;
        }
        if let Some(v) = env(ENV_GROUP_INSTANCE_ID) {
            config.kafka.group_instance_id = Some(v);
        }
        let base = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let base = std::path::absolute(base).map_err(|e| err(format!("cannot resolve its folder: {e}")))?;
        config.catalog.resolve(&base, &env);
        if let Some(registry) = &mut config.registry {
            registry.resolve(&env);
        }
        for topic in &mut config.topics {
            if let Some(schema) = &mut topic.schema {
                *schema = base.join(&*schema);
            }
            for file in topic.schema_ids.values_mut() {
                *file = base.join(&*file);
            }
            if let Some(v) = &mut topic.validator {
                v.module = base.join(&v.module);
            }
        }
        if let Some(dir) = &mut config.wasm.cache_dir {
            *dir = base.join(&*dir);
        }

        config.validate().map_err(err)?;
        Ok(config)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if self.kafka.bootstrap_servers.trim().is_empty() {
            return Err("kafka.bootstrap_servers is empty".into());
        }
        for key in
            ["enable.auto.commit", "enable.auto.offset.store", "auto.offset.reset", "group.id", "bootstrap.servers"]
        {
            if self.kafka.options.contains_key(key) {
                return Err(format!("kafka.options.\"{key}\" is managed by k2-ingest; remove it"));
            }
        }
        if self.kafka.group_instance_id.is_some() && self.kafka.options.contains_key("group.instance.id") {
            return Err("kafka.group_instance_id and kafka.options.\"group.instance.id\" are both set; keep one".into());
        }
        if self.kafka.group_instance_id.as_deref().is_some_and(|id| id.trim().is_empty()) {
            return Err("kafka.group_instance_id is empty".into());
        }
        self.catalog.validate()?;
        self.maintenance.validate(self.commit.interval_ms.saturating_add(self.commit.retry_timeout_ms))?;
        if let Some(registry) = &self.registry {
            registry.validate()?;
        }
        if self.pipeline.batch_records == 0 {
            return Err("pipeline.batch_records must be at least 1".into());
        }
        if self.sink.max_open_writers == 0 {
            return Err("sink.max_open_writers must be at least 1".into());
        }
        if self.commit.max_records == 0 || self.commit.max_bytes == 0 {
            return Err("commit.max_records and commit.max_bytes must be at least 1".into());
        }
        // 0 would make a snapshot at every check of the trigger, or a new data file per write.
        for (key, value) in [
            ("commit.interval_ms", self.commit.interval_ms),
            ("sink.target_file_size_bytes", self.sink.target_file_size_bytes as u64),
        ] {
            if value == 0 {
                return Err(format!("{key} = {value}: must be at least 1"));
            }
        }
        let sources: std::collections::BTreeSet<&str> = self.topics.iter().map(|t| t.name.as_str()).collect();
        let mut seen = std::collections::BTreeSet::new();
        for topic in &self.topics {
            if !seen.insert(&topic.name) {
                return Err(format!("topic `{}` is listed twice", topic.name));
            }
            // Dead letters written to a topic this config reads would come back as input:
            // rejected again, dead-lettered again, or written to another topic's table.
            let dlq_topic = topic.dlq_topic();
            if sources.contains(dlq_topic.as_str()) {
                return Err(format!(
                    "topic `{}`: dlq_topic = \"{dlq_topic}\"{} is also a source topic of this config; \
                     dead letters must not be read back as input",
                    topic.name,
                    default_note(topic.dlq_topic.is_none())
                ));
            }
            // A rollback stages the new version under this suffix (sink::rollback); a table
            // named so would be taken for an interrupted rollback.
            for (key, name) in [("table", topic.table_name()), ("events_table", topic.events_table_name())] {
                if name.ends_with(crate::sink::rollback::STAGED_SUFFIX) {
                    return Err(format!(
                        "topic `{}`: {key} = \"{name}\" ends in `{}`, which k2-ingest keeps for rollbacks",
                        topic.name,
                        crate::sink::rollback::STAGED_SUFFIX
                    ));
                }
            }
            // Event rows appended to a data table would break its schema or mix into its data.
            let events_table = topic.events_table_name();
            if let Some(owner) = self.topics.iter().find(|t| t.table_name() == events_table) {
                return Err(format!(
                    "topic `{}`: events_table = \"{events_table}\"{} is the data table of topic `{}`",
                    topic.name,
                    default_note(topic.events_table.is_none()),
                    owner.name
                ));
            }
            let registry = topic.framing == Framing::Confluent && self.registry.is_some();
            if topic.schema.is_none() && !registry {
                return Err(format!(
                    "topic `{}`: schema is required (only confluent-framed topics with a [registry] can do without)",
                    topic.name
                ));
            }
            if topic.framing == Framing::Confluent && topic.schema_ids.is_empty() && self.registry.is_none() {
                return Err(format!(
                    "topic `{}`: framing = \"confluent\" needs a [registry] or at least one entry in schema_ids",
                    topic.name
                ));
            }
            if let Some(pin) = topic.validator.as_ref().and_then(|v| v.sha256.as_ref())
                && !(pin.len() == 64 && pin.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err(format!("topic `{}`: validator.sha256 `{pin}` is not 64 hex digits", topic.name));
            }
            for id in topic.schema_ids.keys() {
                if id.parse::<u32>().is_err() {
                    return Err(format!("topic `{}`: schema_ids key `{id}` is not a schema id (u32)", topic.name));
                }
            }
        }
        Ok(())
    }

    /// The configuration of `topic`; the error lists the configured topics.
    pub fn topic(&self, topic: &str) -> Result<&TopicConfig> {
        self.topics.iter().find(|t| t.name == topic).ok_or_else(|| Error::Topic {
            topic: topic.to_string(),
            message: format!(
                "not in the config (configured: {})",
                self.topics.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
        })
    }
}

/// Said after a value the user did not write, so they know which key to set.
fn default_note(is_default: bool) -> &'static str {
    if is_default { " (the default)" } else { "" }
}

/// serde names the Rust type a value failed to fit ("expected usize"); users wrote TOML and
/// should read what TOML value is wanted.
fn plain_types(message: &str) -> String {
    const NAMES: [(&str, &str); 8] = [
        ("expected usize", "expected a whole number, 0 or more"),
        ("expected u64", "expected a whole number, 0 or more"),
        ("expected u32", "expected a whole number, 0 or more"),
        ("expected u16", "expected a whole number, 0 or more"),
        ("expected u8", "expected a whole number, 0 or more"),
        ("expected i64", "expected a whole number"),
        ("expected i32", "expected a whole number"),
        ("expected f64", "expected a number"),
    ];
    let mut out = message.to_string();
    for (rust, toml) in NAMES {
        if let Some(at) = out.rfind(rust)
            && out[at + rust.len()..].chars().next().is_none_or(|c| !c.is_alphanumeric())
        {
            out.replace_range(at..at + rust.len(), toml);
        }
    }
    out
}

#[cfg(test)]
mod tests {

    #[test]
    fn type_errors_name_toml_values_not_rust_types() {
        assert_eq!(
            plain_types("invalid type: string \"1000\", expected usize"),
            "invalid type: string \"1000\", expected a whole number, 0 or more"
        );
        assert_eq!(plain_types("expected u8 or usizes"), "expected a whole number, 0 or more or usizes");
    }

    use super::*;

    const MINIMAL: &str = r#"
        [kafka]
        bootstrap_servers = "127.0.0.1:19092"
        [catalog]
        type = "sql"
        database = "wh/catalog.db"
        warehouse = "wh"
        [[topics]]
        name = "market.trades.raw"
        schema = "schemas/trade.avsc"
    "#;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(text, Path::new("/etc/k2/k2.toml"), |_| None)
    }

    #[test]
    fn defaults_apply_and_paths_resolve_against_the_config_file() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.kafka.group_id, "k2-ingest");
        assert_eq!(c.pipeline.batch_records, 1000);
        assert_eq!(c.kafka.auto_offset_reset, OffsetReset::Earliest);
        let CatalogConfig::Sql(sql) = &c.catalog else { panic!("not sql") };
        assert_eq!(sql.database, Path::new("/etc/k2/wh/catalog.db"));
        assert_eq!(c.topics[0].schema.as_deref(), Some(Path::new("/etc/k2/schemas/trade.avsc")));
        assert_eq!(c.topics[0].table_name(), "market_trades_raw");
    }

    #[test]
    fn unknown_key_is_named() {
        let text = MINIMAL.replace("[kafka]", "[kafka]\nbootstrap = \"x\"");
        let msg = parse(&text).unwrap_err().to_string();
        assert!(msg.starts_with("config /etc/k2/k2.toml: "), "{msg}");
        assert!(msg.contains("unknown field `bootstrap`"), "{msg}");
    }

    #[test]
    fn wasm_profiler_is_off_by_default_and_refuses_unknown_values() {
        assert_eq!(parse(MINIMAL).unwrap().wasm.profiler, Profiler::None);
        let jitdump = format!("{MINIMAL}\n[wasm]\nprofiler = \"jitdump\"\n");
        assert_eq!(parse(&jitdump).unwrap().wasm.profiler, Profiler::JitDump);
        let msg = parse(&format!("{MINIMAL}\n[wasm]\nprofiler = \"perf\"\n")).unwrap_err().to_string();
        assert!(msg.contains("unknown variant `perf`, expected one of `none`, `perfmap`, `jitdump`"), "{msg}");
    }

    #[test]
    fn env_overrides_broker_and_catalog() {
        let c = Config::parse(MINIMAL, Path::new("/etc/k2/k2.toml"), |k| match k {
            ENV_BOOTSTRAP => Some("10.0.0.1:9092".into()),
            ENV_WAREHOUSE => Some("/data/wh".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.kafka.bootstrap_servers, "10.0.0.1:9092");
        let CatalogConfig::Sql(sql) = &c.catalog else { panic!("not sql") };
        assert_eq!(sql.warehouse, Path::new("/data/wh"));
    }

    const REST: &str = r#"
        [kafka]
        bootstrap_servers = "127.0.0.1:19092"
        [catalog]
        type = "rest"
        uri = "http://127.0.0.1:19181"
        warehouse = "s3://warehouse/"
        credential = "client:secret"
        [catalog.s3]
        endpoint = "http://127.0.0.1:19000"
        region = "us-east-1"
        path_style_access = true
        [catalog.properties]
        "header.X-Iceberg-Access-Delegation" = "vended-credentials"
    "#;

    #[test]
    fn rest_catalog_maps_to_iceberg_properties_and_hides_secrets() {
        let c = Config::parse(REST, Path::new("/etc/k2/k2.toml"), |k| match k {
            ENV_CATALOG_TOKEN => Some("t0ken".into()),
            _ => None,
        })
        .unwrap();
        let CatalogConfig::Rest(rest) = &c.catalog else { panic!("not rest") };
        let props = rest.properties();
        assert_eq!(props["uri"], "http://127.0.0.1:19181");
        assert_eq!(props["credential"], "client:secret");
        assert_eq!(props["token"], "t0ken");
        assert_eq!(props["s3.path-style-access"], "true");
        assert_eq!(props["s3.endpoint"], "http://127.0.0.1:19000");
        assert_eq!(props["header.X-Iceberg-Access-Delegation"], "vended-credentials");
        assert!(!props.contains_key("s3.access-key-id"), "left to the environment");
        assert_eq!(c.catalog.namespace(), "market");
        let debug = format!("{c:?}");
        assert!(!debug.contains("client:secret") && !debug.contains("t0ken"), "{debug}");
    }

    #[test]
    fn rest_catalog_errors_name_the_key() {
        let bad_uri = REST.replace("uri = \"http://127.0.0.1:19181\"", "uri = \"127.0.0.1:19181\"");
        let msg = parse(&bad_uri).unwrap_err().to_string();
        assert!(msg.contains("catalog.uri `127.0.0.1:19181` is not an http:// or https:// address"), "{msg}");
        let bad_cred = REST.replace("client:secret", "client");
        let msg = parse(&bad_cred).unwrap_err().to_string();
        assert!(msg.contains("catalog.credential must be `client_id:client_secret`"), "{msg}");
        let half = REST.replace("region = ", "access_key_id = \"k\"\nregion = ");
        let msg = parse(&half).unwrap_err().to_string();
        assert!(msg.contains("catalog.s3.access_key_id and catalog.s3.secret_access_key go together"), "{msg}");
        let unknown = REST.replace("region = ", "bucket = \"b\"\nregion = ");
        let msg = parse(&unknown).unwrap_err().to_string();
        assert!(msg.contains("unknown field `bucket`"), "{msg}");
    }

    #[test]
    fn managed_kafka_options_are_refused() {
        let text = MINIMAL.replace("[catalog]", "[kafka.options]\n\"enable.auto.commit\" = \"true\"\n[catalog]");
        let msg = parse(&text).unwrap_err().to_string();
        assert!(msg.contains("kafka.options.\"enable.auto.commit\" is managed"), "{msg}");
    }

    #[test]
    fn kafka_option_values_and_url_credentials_stay_out_of_debug_output() {
        let text = MINIMAL.replace(
            "[catalog]",
            "[kafka.options]\n\"sasl.password\" = \"hunter2\"\n\"sasl.oauthbearer.config\" = \"clientSecret=s3\"\n[catalog]",
        ) + "[registry]\nurl = \"http://svc:pa55@r:8081/?api_key=k3y\"\n";
        let c = parse(&text).unwrap();
        let debug = format!("{c:?}");
        assert!(debug.contains("sasl.password"), "the keys still show: {debug}");
        for secret in ["hunter2", "clientSecret", "pa55", "k3y"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        let bad = text.replace("http://svc:pa55@r:8081/?api_key=k3y", "svc:pa55@r:8081");
        let msg = parse(&bad).unwrap_err().to_string();
        assert!(!msg.contains("pa55") && msg.contains("registry.url `<redacted>@r:8081`"), "{msg}");
    }

    #[test]
    fn confluent_framing_needs_schema_ids() {
        let text = MINIMAL.replace("schema = \"schemas/trade.avsc\"", "schema = \"s.avsc\"\nframing = \"confluent\"");
        let msg = parse(&text).unwrap_err().to_string();
        assert!(msg.contains("needs a [registry] or at least one entry in schema_ids"), "{msg}");
    }

    #[test]
    fn registry_section_defaults_overrides_and_errors() {
        let text = MINIMAL.replace("schema = \"schemas/trade.avsc\"", "schema = \"s.avsc\"\nframing = \"confluent\"")
            + "[registry]\nurl = \"http://r:8081\"\nusername = \"k\"\npassword = \"secret\"\n";
        let c = parse(&text).unwrap();
        assert_eq!(c.topics[0].subject(), "market.trades.raw-value");
        assert!(!c.topics[0].allow_other_subjects, "ids of other subjects are refused by default");
        let allowing = text.replace("framing = \"confluent\"", "framing = \"confluent\"\nallow_other_subjects = true");
        assert!(parse(&allowing).unwrap().topics[0].allow_other_subjects);
        let without = text.replace("schema = \"s.avsc\"\n", "");
        assert!(parse(&without).unwrap().topics[0].schema.is_none(), "a registry topic needs no schema file");
        let msg = parse(&MINIMAL.replace("schema = \"schemas/trade.avsc\"\n", "")).unwrap_err().to_string();
        assert!(msg.contains("topic `market.trades.raw`: schema is required"), "{msg}");
        let r = c.registry.as_ref().unwrap();
        assert_eq!((r.timeout_ms, r.cache_schemas), (10_000, 1000));
        assert!(!format!("{r:?}").contains("secret"), "the password stays out of debug output");
        let env = |k: &str| (k == ENV_REGISTRY_URL).then(|| "https://other:443".to_string());
        let c = Config::parse(&text, Path::new("/etc/k2/k2.toml"), env).unwrap();
        assert_eq!(c.registry.unwrap().url, "https://other:443");
        for (bad, expected) in [
            ("url = \"http://r:8081\"", "url = \"r:8081\"", "registry.url `r:8081` must start with http://"),
            ("username = \"k\"\n", "", "registry.password is set but registry.username is not"),
            ("password = \"secret\"", "token = \"t\"", "either username/password or token"),
            (
                "url = \"http://r:8081\"",
                "url = \"http://r:8081\"\ncache_schemas = 0",
                "cache_schemas must be at least 1",
            ),
            ("url = \"http://r:8081\"", "url = \"http://r:8081\"\nschemas = 1", "unknown field `schemas`"),
        ]
        .map(|(from, to, msg)| (text.replace(from, to), msg))
        {
            let msg = parse(&bad).unwrap_err().to_string();
            assert!(msg.contains(expected), "{msg}");
        }
    }

    #[test]
    fn validator_pin_must_be_a_sha256_and_the_cache_dir_resolves() {
        let with = |pin: &str| {
            MINIMAL.replace(
                "schema = \"schemas/trade.avsc\"",
                &format!("schema = \"s.avsc\"\n[topics.validator]\nmodule = \"v.wasm\"\nsha256 = \"{pin}\""),
            ) + "[wasm]\ncache_dir = \"cache\"\n"
        };
        let msg = parse(&with("abc")).unwrap_err().to_string();
        assert!(msg.contains("validator.sha256 `abc` is not 64 hex digits"), "{msg}");
        let c = parse(&with(&"a1".repeat(32))).unwrap();
        assert_eq!(c.wasm.cache_dir.as_deref(), Some(Path::new("/etc/k2/cache")));
        assert_eq!(c.topics[0].validator.as_ref().unwrap().on_failure, FailurePolicy::Fail);
    }

    /// Config text → the exact error a user sees, for values that parse but mean nonsense.
    #[test]
    fn nonsense_values_are_refused_naming_key_and_value() {
        let quotes = "[[topics]]\nname = \"market.quotes.raw\"\nschema = \"q.avsc\"\n";
        let trades = "schema = \"schemas/trade.avsc\"";
        let with = |extra: &str| MINIMAL.replace(trades, &format!("{trades}\n{extra}"));
        let cases = [
            (MINIMAL.to_string() + "[commit]\ninterval_ms = 0\n", "commit.interval_ms = 0: must be at least 1"),
            (
                with("table = \"t__k2_rollback\""),
                "topic `market.trades.raw`: table = \"t__k2_rollback\" ends in `__k2_rollback`, which k2-ingest keeps for rollbacks",
            ),
            (
                MINIMAL.to_string() + "[sink]\ntarget_file_size_bytes = 0\n",
                "sink.target_file_size_bytes = 0: must be at least 1",
            ),
            (
                with("dlq_topic = \"market.trades.raw\""),
                "topic `market.trades.raw`: dlq_topic = \"market.trades.raw\" is also a source topic of this config; \
                 dead letters must not be read back as input",
            ),
            (
                with("dlq_topic = \"market.quotes.raw\"") + quotes,
                "topic `market.trades.raw`: dlq_topic = \"market.quotes.raw\" is also a source topic of this config; \
                 dead letters must not be read back as input",
            ),
            (
                MINIMAL.to_string() + "[[topics]]\nname = \"market.trades.raw.dlq\"\nschema = \"d.avsc\"\n",
                "topic `market.trades.raw`: dlq_topic = \"market.trades.raw.dlq\" (the default) is also a source topic \
                 of this config; dead letters must not be read back as input",
            ),
            (
                with("events_table = \"market_trades_raw\""),
                "topic `market.trades.raw`: events_table = \"market_trades_raw\" is the data table of topic \
                 `market.trades.raw`",
            ),
            (
                with("events_table = \"quotes\"") + quotes + "table = \"quotes\"\n",
                "topic `market.trades.raw`: events_table = \"quotes\" is the data table of topic `market.quotes.raw`",
            ),
            (
                MINIMAL.to_string() + quotes + "table = \"market_trades_raw_events\"\n",
                "topic `market.trades.raw`: events_table = \"market_trades_raw_events\" (the default) is the data \
                 table of topic `market.quotes.raw`",
            ),
        ];
        for (text, expected) in cases {
            let msg = parse(&text).unwrap_err().to_string();
            assert_eq!(msg, format!("config /etc/k2/k2.toml: {expected}"), "for:\n{text}");
        }
    }

    #[test]
    fn unknown_topic_lists_configured_ones() {
        let msg = parse(MINIMAL).unwrap().topic("nope").unwrap_err().to_string();
        assert_eq!(msg, "topic nope: not in the config (configured: market.trades.raw)");
    }

    #[test]
    fn example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../k2.example.toml");
        let c = Config::load(&path).unwrap();
        assert!(c.topic("market.trades.raw").is_ok());
        let rest = Config::load(&path.with_file_name("k2.rest.example.toml")).unwrap();
        assert!(matches!(rest.catalog, CatalogConfig::Rest(_)));
    }
}
