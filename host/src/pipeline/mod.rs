//! The consume loop: Kafka → decode → per-partition batches → validator → writer → commit.

mod event_log;
pub(crate) mod policy;
mod progress;
mod rebalance;
mod summary;

pub use progress::Progress;
pub use summary::RunSummary;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use event_log::EventLog;
use policy::{Cause, SetAside, check_fatal_verdict, goes_to_dead_letters, keep_only, set_aside};
use rebalance::{HeldOffsets, TableStartOffsets};

use arrow_schema::SchemaRef;
use iceberg::table::Table;
use rdkafka::consumer::Consumer;
use rdkafka::message::{BorrowedMessage, OwnedHeaders};
use rdkafka::{Message, Offset};

use crate::config::{Config, InvalidPolicy, TopicConfig};
use crate::decode::avro::TopicDecoder;
use crate::decode::columns::{ColumnsBuilder, KafkaMeta};
use crate::decode::evolve::merge;
use crate::decode::registry::SchemaRegistry;
use crate::decode::schema::{field_columns, iceberg_schema, load_avsc, record_fields};
use crate::error::{Error, Result};
use crate::failpoint;
use crate::guest::{BatchInput, GuestEngine, RecoveryStats, SupervisedValidator, ValidatorModule, Verdict};
use crate::kafka::consumer::{AssignmentNews, BROKER_REQUEST_TIMEOUT, GroupConsumer, commit_offsets, group_consumer};
use crate::kafka::dlq::{CODE_UNDECODABLE, DeadLetter, DeadLetters};
use crate::kafka::group::GroupView;
use crate::metrics::TopicMetrics;
use crate::sink::catalog::{TableCatalog, arrow_schema};
use crate::sink::commit::{CommitOutcome, append_with_offsets};
use crate::sink::events::{EventRow, EventsTable};
use crate::sink::offsets::{PartitionOffsets, stored_offsets};
use crate::sink::state::{StateFiles, read_state, write_state};
use crate::sink::writer::TableWriter;
use crate::sink::{evolve, partition};

/// How long a bounded run waits for its first partition assignment beyond the idle timeout.
/// Longer than librdkafka's default session timeout (45 s): after a crash, the group holds
/// the dead member's partitions until its session expires.
const ASSIGNMENT_GRACE: Duration = Duration::from_secs(60);

/// Commits re-applied after conflicts with other writers' disjoint commits, before giving up.
const MAX_COMMIT_ATTEMPTS: u32 = 20;

/// When a `consume` run ends.
#[derive(Debug, Clone)]
pub struct RunBounds {
    /// Stop after this many messages (all of them, decodable or not).
    pub max_messages: Option<u64>,
    /// Stop when no message arrived for this long; `None` runs until interrupted.
    pub idle_timeout: Option<Duration>,
}

/// One partition's records waiting to be handed to the validator as a batch.
struct PartitionBatch {
    columns: ColumnsBuilder,
    offsets: Vec<i64>,
    timestamps_us: Vec<i64>,
    key_data: Vec<u8>,
    key_offsets: Vec<u32>,
    /// Bodies packed like the keys, and headers, kept only when records may go to the
    /// dead-letter topic, which gets them as they were read.
    body_data: Vec<u8>,
    body_offsets: Vec<u32>,
    headers: Vec<Option<OwnedHeaders>>,
    /// Next offset after the last message seen (decoded or not) of this partition.
    next_offset: Option<i64>,
    validator: Option<SupervisedValidator>,
    /// The validator's recovery counts already added to the run summary.
    recovery_seen: RecoveryStats,
}

/// A consume run over one topic.
pub struct Pipeline<'a> {
    config: &'a Config,
    topic: &'a TopicConfig,
    table_name: String,
    decoder: TopicDecoder,
    /// The table schema (by id) the partition batches' columns are built in.
    columns_schema_id: i32,
    /// Where writer schemas of ids the decoder does not know come from.
    registry: Option<SchemaRegistry>,
    /// Where the reader schema came from, for messages: the schema file and the ids merged in.
    schema_origin: SchemaOrigin,
    arrow_schema: SchemaRef,
    avro_fields: Vec<String>,
    /// Positions of the Avro-field columns in the table schema (handed to validators).
    field_columns: Vec<usize>,
    catalog: Arc<TableCatalog>,
    table: Table,
    writer: Option<TableWriter>,
    module: Option<ValidatorModule>,
    dead_letters: Option<DeadLetters>,
    /// The sequence-events table, for topics with a validator.
    events: Option<EventsTable>,
    /// Events of records in the writer, committed to the events table before the data.
    pending_events: Vec<EventRow>,
    /// Per-event warnings in the current window, and those left out.
    event_log: EventLog,
    metrics: TopicMetrics,
    partitions: BTreeMap<i32, PartitionBatch>,
    /// Offsets whose records are all in the writer (or set aside) but not yet committed.
    pending: PartitionOffsets,
    /// Table offsets that partitions were assigned at and the group has not committed yet:
    /// after a crash between the table commit and the group commit, the group catches up.
    group_catch_up: PartitionOffsets,
    /// Per partition, the first offset read since the last commit: if the table's stored
    /// offset has moved past it, another writer committed records we hold.
    uncommitted_from: PartitionOffsets,
    /// Validator state of partitions revoked while their validated records wait in the
    /// writer: committed with those records, or resumed from if the partition comes back.
    revoked_states: BTreeMap<i32, Vec<u8>>,
    /// Partitions a commit conflict sought back to the table's offsets since `learn_schema`
    /// last cleared it: their messages in hand come again.
    rewound: std::collections::BTreeSet<i32>,
    /// `pending` and `uncommitted_from` as the rebalance callback sees them.
    held: Arc<Mutex<HeldOffsets>>,
    /// The next offset stored in the table per partition held, as far as this instance
    /// knows (assignment and its own commits): the base of the lag gauges.
    table_offsets: PartitionOffsets,
    last_commit: Instant,
    last_refresh: Instant,
    progress: Option<tokio::sync::watch::Sender<Progress>>,
    summary: RunSummary,
}

impl<'a> Pipeline<'a> {
    /// Prepares the run: schemas, catalog and table (created if missing), validator module
    /// (loaded into the process's `engine`).
    pub async fn open(config: &'a Config, engine: &GuestEngine, topic_name: &str) -> Result<Self> {
        let topic = config.topic(topic_name)?;
        let registry = match (&config.registry, topic.framing) {
            (Some(r), crate::config::Framing::Confluent) => {
                let registry = SchemaRegistry::new(r)
                    .map_err(|e| Error::Topic { topic: topic.name.clone(), message: e.to_string() })?;
                Some(match topic.allow_other_subjects {
                    true => registry,
                    false => registry.requiring_subject(topic.subject()),
                })
            }
            _ => None,
        };
        // The table's starting schema: the topic's file, or its subject's latest version.
        let (start, mut schema_origin) = match (&topic.schema, &registry) {
            (Some(path), _) => (load_avsc(path)?, SchemaOrigin { file: path.display().to_string(), ids: Vec::new() }),
            (None, Some(registry)) => {
                let subject = topic.subject();
                let (id, version, schema) = registry
                    .latest(&subject)
                    .await
                    .map_err(|e| Error::Topic { topic: topic.name.clone(), message: e.to_string() })?;
                tracing::info!(topic = %topic.name, subject, version, schema_id = id, "starting schema from the registry");
                (schema, SchemaOrigin { file: format!("subject {subject} version {version}"), ids: vec![id] })
            }
            (None, None) => unreachable!("config validation requires a schema file without a registry"),
        };
        let mut decoder = TopicDecoder::new(topic, start)?;
        // The writer schemas the config maps are merged in from the start, as if met in a record.
        let mut known: Vec<(u32, apache_avro::Schema)> =
            decoder.writer_schemas().map(|(id, s)| (id, s.clone())).collect();
        known.sort_by_key(|(id, _)| *id);
        for (id, writer) in known {
            match merge(decoder.table_schema(), &writer) {
                Ok(None) => {}
                Ok(Some(merged)) => decoder.set_reader(merged),
                Err(e) => return Err(schema_origin.incompatible(&topic.name, &id.to_string(), &e)),
            }
            schema_origin.ids.push(id);
        }
        let origin_path = std::path::PathBuf::from(&schema_origin.file);
        let avro_fields: Vec<String> = record_fields(decoder.table_schema()).iter().map(|f| f.name.clone()).collect();
        let schema = iceberg_schema(decoder.table_schema(), &origin_path, config.sink.metadata_columns)?;
        let catalog = Arc::new(TableCatalog::open(&config.catalog).await?);
        let table_name = topic.table_name();
        let spec = partition::bind(&schema, &topic.partition_by, &topic.name)?;
        let table = catalog.load_or_create(&table_name, schema.clone(), spec).await?;
        partition::check_table(&table, &topic.partition_by, &topic.name)?;
        // A table made by an earlier run (or another tool) may lack columns the schema has:
        // without them those fields would be dropped, so the table evolves first.
        let table = evolve_table(&catalog, table, &schema, &topic.name, &schema_origin.describe()).await?;
        let arrow_schema = arrow_schema(&table)?;
        let field_columns = field_columns(&arrow_schema, &avro_fields);
        let module = match &topic.validator {
            Some(v) => {
                let module = engine.load_pinned(&v.module, v.sha256.as_deref())?;
                tracing::info!(module = %v.module.display(), sha256 = module.sha256(), pinned = v.sha256.is_some(),
                    cache = module.cache_status().as_str(), "validator module loaded");
                Some(module)
            }
            None => None,
        };
        let dead_letters = if topic.uses_dlq() {
            let validator = module.as_ref().map(|m| m.info()).transpose()?;
            Some(DeadLetters::open(&config.kafka, &topic.name, &topic.dlq_topic(), validator).await?)
        } else {
            None
        };
        let events = match &topic.validator {
            Some(_) => Some(EventsTable::open(&catalog, &topic.events_table_name()).await?),
            None => None,
        };
        let summary = RunSummary {
            topic: topic.name.clone(),
            table: table.identifier().to_string(),
            dlq_topic: dead_letters.as_ref().map(|d| d.topic().to_string()),
            events_table: events.as_ref().map(|e| e.identifier()),
            ..Default::default()
        };
        Ok(Self {
            config,
            topic,
            table_name,
            decoder,
            columns_schema_id: table.metadata().current_schema_id(),
            registry,
            schema_origin,
            arrow_schema,
            avro_fields,
            field_columns,
            catalog,
            table,
            writer: None,
            module,
            dead_letters,
            events,
            pending_events: Vec::new(),
            event_log: EventLog::default(),
            metrics: TopicMetrics::new(&topic.name, &summary.table),
            partitions: BTreeMap::new(),
            pending: PartitionOffsets::new(),
            group_catch_up: PartitionOffsets::new(),
            uncommitted_from: PartitionOffsets::new(),
            revoked_states: BTreeMap::new(),
            rewound: Default::default(),
            held: Arc::new(Mutex::new(HeldOffsets::default())),
            table_offsets: PartitionOffsets::new(),
            last_commit: Instant::now(),
            last_refresh: Instant::now(),
            progress: None,
            summary,
        })
    }

    /// Publishes the run's [`Progress`] to `tx` about once a second.
    pub fn report_progress(&mut self, tx: tokio::sync::watch::Sender<Progress>) {
        self.progress = Some(tx);
    }

    /// Consumes until a bound is reached or `shutdown` resolves, commits, and reports.
    pub async fn run(
        mut self,
        bounds: RunBounds,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<RunSummary> {
        let started = Instant::now();
        let start = TableStartOffsets {
            catalog: self.catalog.clone(),
            table: self.table_name.clone(),
            runtime: tokio::runtime::Handle::current(),
            held: self.held.clone(),
        };
        let consumer = group_consumer(&self.config.kafka, Box::new(start))?;
        consumer
            .subscribe(&[&self.topic.name])
            .map_err(|source| Error::Kafka { context: format!("subscribing to {}", self.topic.name), source })?;
        let poll = Duration::from_millis(self.config.kafka.poll_timeout_ms.max(1));
        let interval = Duration::from_millis(self.config.commit.interval_ms);
        // Joining the group takes a moment: idleness counts only from the first assignment.
        let mut idle_since: Option<Instant> = None;
        tokio::pin!(shutdown);
        tracing::info!(topic = %self.topic.name, table = %self.summary.table, group = %self.config.kafka.group_id, "consuming");

        loop {
            if bounds.max_messages.is_some_and(|n| self.summary.consumed >= n) {
                break;
            }
            // One clock read per message serves the poll deadline, idleness and the commit and
            // progress timers: at a few microseconds per record, clock reads showed in profiles.
            let now = Instant::now();
            let received = tokio::select! {
                _ = &mut shutdown => {
                    tracing::info!("shutdown requested; committing what is consistent");
                    break;
                }
                r = tokio::time::timeout_at((now + poll).into(), consumer.recv()) => r,
            };
            if let Some(news) = consumer.context().take_news() {
                self.apply_assignment_news(news)?;
            }
            match received {
                Ok(Ok(msg)) => {
                    idle_since = Some(now);
                    let unknown = self.decoder.unknown_schema_id(msg.payload().unwrap_or_default());
                    let reread = match unknown {
                        Some(id) => self.learn_schema(id, msg.partition(), &consumer).await?,
                        None => false,
                    };
                    if !reread {
                        self.accept_message(&msg).await?;
                    }
                }
                Ok(Err(e)) => {
                    return Err(Error::Kafka { context: format!("consuming {}", self.topic.name), source: e });
                }
                Err(_elapsed) => {
                    // A quiet moment: hand partial batches on so the interval commit includes them.
                    self.flush_partitions().await?;
                    let assigned = consumer.assignment().map(|a| a.count() > 0).unwrap_or(false);
                    match (idle_since, assigned) {
                        (None, true) => idle_since = Some(Instant::now()),
                        (None, false)
                            if bounds.idle_timeout.is_some_and(|t| started.elapsed() >= t + ASSIGNMENT_GRACE) =>
                        {
                            return Err(Error::Topic {
                                topic: self.topic.name.clone(),
                                message: format!(
                                    "no partition was assigned to group {} within {} s; does the topic exist?",
                                    self.config.kafka.group_id,
                                    started.elapsed().as_secs()
                                ),
                            });
                        }
                        (Some(since), _) if bounds.idle_timeout.is_some_and(|t| since.elapsed() >= t) => {
                            tracing::info!(idle_ms = since.elapsed().as_millis() as u64, "topic idle; ending the run");
                            break;
                        }
                        _ => {}
                    }
                }
            }
            if self.commit_due(now, interval) {
                self.commit(&consumer).await?;
            }
            if now.saturating_duration_since(self.last_refresh) >= progress::REFRESH_INTERVAL {
                self.refresh(&consumer);
            }
        }

        self.flush_partitions().await?;
        self.commit(&consumer).await?;
        self.event_log.close_window(&self.topic.name);
        // Leave the group before reading positions, so a rebalance in progress is not kept waiting.
        consumer.unsubscribe();
        drop(consumer);
        for (p, pos) in GroupView::open(&self.config.kafka)?.positions(&self.topic.name)? {
            if let Some(o) = pos.committed {
                self.summary.offsets.insert(p, o);
            }
            let lag = pos.lag_from(pos.committed);
            self.summary.lag.insert(p, lag);
            if self.table_offsets.contains_key(&p) {
                self.metrics.consumer_lag(p, lag);
            }
        }
        self.publish_progress(Some(0));
        self.summary.snapshot_id = self.table.metadata().current_snapshot().map(|s| s.snapshot_id());
        self.summary.duration_secs = started.elapsed().as_secs_f64();
        Ok(self.summary)
    }

    /// Fetches the writer schema of `id` from the registry. If the table's schema does not read
    /// it as it is, evolves the table first, committing what was read before, so no record of
    /// the new version is written with the old columns. An id the registry does not have is
    /// left to decoding, which sets its records aside; an incompatible schema stops the topic.
    ///
    /// Returns true when the message in hand (of `partition`) must not be accepted: the commit
    /// found another writer had committed this partition's records and rewound it, so the
    /// message comes again from the table's offset.
    async fn learn_schema(&mut self, id: u32, partition: i32, consumer: &GroupConsumer) -> Result<bool> {
        let Some(registry) = &self.registry else { return Ok(false) };
        let writer = match registry.schema(id).await {
            Ok(w) => w,
            Err(e) if e.is_bad_record() => {
                tracing::warn!(topic = %self.topic.name, schema_id = id, error = %e, "schema id unusable; its records are undecodable");
                self.decoder.reject(id, e.to_string());
                return Ok(false);
            }
            Err(e) => {
                return Err(Error::Topic {
                    topic: self.topic.name.clone(),
                    message: format!("{e}; stopping without committing what is not yet in the table"),
                });
            }
        };
        let merged = match merge(self.decoder.table_schema(), &writer.schema) {
            Ok(m) => m,
            Err(e) => {
                let versions = registry.versions_of(id).await;
                let named = match versions.as_slice() {
                    [] => format!("{id}"),
                    vs => format!(
                        "{id} ({})",
                        vs.iter()
                            .map(|v| format!("{} version {}", v.subject, v.version))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                return Err(self.schema_origin.incompatible(&self.topic.name, &named, &e));
            }
        };
        let merged_any = merged.is_some();
        let mut rewound = false;
        if let Some(merged) = merged {
            // What was read with the old schema goes to the table with the old columns first.
            self.rewound.clear();
            self.flush_partitions().await?;
            self.commit(consumer).await?;
            rewound = self.rewound.contains(&partition);
            self.evolve_to(merged, id).await?;
        }
        self.decoder.learn(id, writer.schema.clone());
        self.schema_origin.ids.push(id);
        tracing::info!(topic = %self.topic.name, schema_id = id, evolved = merged_any, "writer schema learned");
        Ok(rewound)
    }

    /// Makes `merged` the reader schema: evolves the table to it and rebuilds what depends on
    /// the table's columns. Every partition batch is empty and the writer closed (just committed).
    async fn evolve_to(&mut self, merged: apache_avro::Schema, id: u32) -> Result<()> {
        // Mapping errors read "schema id N: field `x`: …".
        let desired =
            iceberg_schema(&merged, std::path::Path::new(&format!("id {id}")), self.config.sink.metadata_columns)
                .map_err(|e| Error::Topic { topic: self.topic.name.clone(), message: e.to_string() })?;
        let origin = format!("{} and schema id {id}", self.schema_origin.describe());
        let table = match self.catalog.load(&self.table_name).await? {
            Some(t) => t,
            None => self.table.clone(),
        };
        self.table = evolve_table(&self.catalog, table, &desired, &self.topic.name, &origin).await?;
        self.columns_schema_id = self.table.metadata().current_schema_id();
        self.arrow_schema = arrow_schema(&self.table)?;
        self.avro_fields = record_fields(&merged).iter().map(|f| f.name.clone()).collect();
        self.field_columns = field_columns(&self.arrow_schema, &self.avro_fields);
        self.decoder.set_reader(merged);
        for batch in self.partitions.values_mut() {
            debug_assert!(batch.columns.is_empty(), "batches are flushed before the schema changes");
            batch.columns = ColumnsBuilder::new(self.arrow_schema.clone(), &self.avro_fields, &self.table_name)?;
        }
        Ok(())
    }

    /// Decodes one message into its partition's batch; hands the batch on when full.
    async fn accept_message(&mut self, msg: &BorrowedMessage<'_>) -> Result<()> {
        self.summary.consumed += 1;
        self.metrics.consumed();
        let partition = msg.partition();
        let meta = KafkaMeta { partition, offset: msg.offset(), timestamp_ms: msg.timestamp().to_millis() };
        if !self.partitions.contains_key(&partition) {
            let batch = self.new_partition_batch(partition).await?;
            self.partitions.insert(partition, batch);
        }
        self.uncommitted_from.entry(partition).or_insert(meta.offset);
        let state = self.partitions.get_mut(&partition).expect("inserted above");
        state.next_offset = Some(meta.offset + 1);
        let decoded = self.decoder.decode_into(msg.payload().unwrap_or_default(), &mut state.columns, meta);
        match decoded {
            Ok(()) => {
                state.offsets.push(meta.offset);
                state.timestamps_us.push(meta.timestamp_ms.map_or(0, |ms| ms.saturating_mul(1000)));
                state.key_data.extend_from_slice(msg.key().unwrap_or_default());
                state.key_offsets.push(state.key_data.len() as u32);
                if self.dead_letters.is_some() {
                    state.body_data.extend_from_slice(msg.payload().unwrap_or_default());
                    state.body_offsets.push(state.body_data.len() as u32);
                    state.headers.push(msg.headers().map(|h| h.detach()));
                }
                if state.offsets.len() >= self.config.pipeline.batch_records {
                    self.process_batch(partition).await?;
                }
            }
            Err(e) => {
                self.summary.undecodable += 1;
                self.metrics.decode_error();
                match self.topic.on_invalid {
                    InvalidPolicy::Fail => {
                        return Err(Error::Topic {
                            topic: self.topic.name.clone(),
                            message: format!(
                                "partition {partition} offset {}: undecodable ({e}); stopping without committing \
                                 (on_invalid = \"fail\")",
                                meta.offset
                            ),
                        });
                    }
                    InvalidPolicy::Dlq => {
                        let headers = msg.headers().map(|h| h.detach());
                        let message = e.to_string();
                        let letter = DeadLetter {
                            partition,
                            offset: meta.offset,
                            timestamp_ms: meta.timestamp_ms,
                            key: msg.key(),
                            payload: msg.payload(),
                            headers: headers.as_ref(),
                            code: CODE_UNDECODABLE,
                            message: &message,
                        };
                        self.dead_letters.as_mut().expect("opened for on_invalid = dlq").send(letter).await?;
                        self.summary.dead_lettered += 1;
                        self.metrics.dead_lettered(CODE_UNDECODABLE);
                    }
                    InvalidPolicy::Skip => {}
                }
                let state = self.partitions.get_mut(&partition).expect("inserted above");
                // Counted for the run summary; the first few are logged so an operator can see why.
                if self.summary.undecodable <= 3 {
                    tracing::warn!(topic = %self.topic.name, partition, offset = meta.offset, error = %e, "undecodable record set aside");
                }
                if state.offsets.is_empty() {
                    // Nothing buffered ahead of it: its offset is done.
                    self.advance(partition, meta.offset + 1);
                }
            }
        }
        Ok(())
    }

    async fn new_partition_batch(&mut self, partition: i32) -> Result<PartitionBatch> {
        let columns = ColumnsBuilder::new(self.arrow_schema.clone(), &self.avro_fields, &self.table_name)?;
        let validator = match (&self.module, &self.topic.validator) {
            (Some(module), Some(cfg)) => {
                let (state, from) = match self.revoked_states.get(&partition) {
                    Some(state) => (Some(state.clone()), "this instance's uncommitted records"),
                    None => (self.committed_state(partition).await?, "the table"),
                };
                let restored = state.as_ref().map(|s| s.len());
                let validator = SupervisedValidator::start(module, cfg, state)?;
                tracing::info!(partition, validator = %validator.info().name, version = %validator.info().version,
                    restored_bytes = restored, restored_from = restored.map(|_| from), "validator ready");
                Some(validator)
            }
            _ => None,
        };
        Ok(PartitionBatch {
            columns,
            offsets: Vec::new(),
            timestamps_us: Vec::new(),
            key_data: Vec::new(),
            key_offsets: vec![0],
            body_data: Vec::new(),
            body_offsets: vec![0],
            headers: Vec::new(),
            next_offset: None,
            validator,
            recovery_seen: RecoveryStats::default(),
        })
    }

    /// The validator state committed with the table's latest snapshot for `partition`: a
    /// fresh load, as the partition may come from another instance that committed since.
    async fn committed_state(&self, partition: i32) -> Result<Option<Vec<u8>>> {
        let Some(table) = self.catalog.load(&self.table_name).await? else { return Ok(None) };
        read_state(&table, &self.topic.name, partition).await
    }

    /// Hands every partition's partial batch on.
    async fn flush_partitions(&mut self) -> Result<()> {
        let partitions: Vec<i32> = self.partitions.keys().copied().collect();
        for p in partitions {
            self.process_batch(p).await?;
        }
        Ok(())
    }

    /// Validates one partition's batch and appends the accepted records to the writer.
    async fn process_batch(&mut self, partition: i32) -> Result<()> {
        let Some(state) = self.partitions.get_mut(&partition) else { return Ok(()) };
        let next_offset = state.next_offset;
        if state.offsets.is_empty() {
            // Only records that did not decode were read since the last batch, or nothing:
            // their offsets still move on, but an offset already held or committed must not,
            // or every quiet moment of a follow run would make an empty snapshot.
            let done = self.pending.get(&partition).or(self.table_offsets.get(&partition));
            if let Some(o) = next_offset
                && done.is_none_or(|&d| o > d)
            {
                self.advance(partition, o);
            }
            return Ok(());
        }
        let records = state.columns.finish()?;
        self.metrics.batch(records.num_rows());
        let verdict = match state.validator.as_mut() {
            Some(v) => {
                let input = BatchInput {
                    topic: &self.topic.name,
                    partition,
                    records: &records,
                    fields: &self.field_columns,
                    offsets: &state.offsets,
                    timestamps_us: &state.timestamps_us,
                    key_data: &state.key_data,
                    key_offsets: &state.key_offsets,
                    now_micros: now_micros(),
                };
                let called = Instant::now();
                let verdict = v.validate(&input).await.map_err(|e| Error::Topic {
                    topic: self.topic.name.clone(),
                    message: format!("validator failed; stopping the topic without committing its offsets: {e}"),
                });
                self.metrics.validator_call(called.elapsed());
                let stats = v.stats();
                self.metrics.validator_traps(stats.traps - state.recovery_seen.traps);
                self.summary.validator_restarts += stats.restarts - state.recovery_seen.restarts;
                self.metrics.validator_restarts(stats.restarts - state.recovery_seen.restarts);
                self.summary.validator_isolated += stats.isolated - state.recovery_seen.isolated;
                state.recovery_seen = stats;
                verdict?
            }
            None => Verdict::default(),
        };
        let first_offset = state.offsets[0];
        check_fatal_verdict(self.topic, partition, &state.offsets, &verdict)?;
        let set_aside = set_aside(self.topic, &verdict);
        if let Some(dl) = self.dead_letters.as_mut() {
            for SetAside { index, code, message, .. } in
                set_aside.iter().filter(|s| goes_to_dead_letters(self.topic, s))
            {
                let (b, k) = (&state.body_offsets, &state.key_offsets);
                let key = &state.key_data[k[*index] as usize..k[index + 1] as usize];
                dl.send(DeadLetter {
                    partition,
                    offset: state.offsets[*index],
                    timestamp_ms: Some(state.timestamps_us[*index] / 1000).filter(|&t| t > 0),
                    key: Some(key).filter(|k| !k.is_empty()),
                    payload: Some(&state.body_data[b[*index] as usize..b[index + 1] as usize]),
                    headers: state.headers[*index].as_ref(),
                    code,
                    message,
                })
                .await?;
                self.summary.dead_lettered += 1;
                self.metrics.dead_lettered(code);
            }
        }
        self.summary.duplicates_set_aside += set_aside.iter().filter(|s| s.cause == Cause::Duplicate).count() as u64;
        if self.events.is_some() {
            let detected_at_us = now_micros();
            for e in &verdict.events {
                let row = EventRow {
                    partition,
                    offset: state.offsets[e.index],
                    key: e.key.clone(),
                    kind: e.kind,
                    expected: e.expected,
                    received: e.received,
                    missing: e.missing,
                    detected_at_us,
                };
                self.event_log.warn(&self.topic.name, &row);
                self.pending_events.push(row);
            }
        }
        state.offsets.clear();
        state.timestamps_us.clear();
        state.key_data.clear();
        state.key_offsets.truncate(1);
        state.body_data.clear();
        state.body_offsets.truncate(1);
        state.headers.clear();

        let accepted = keep_only(records, set_aside.iter().map(|s| s.index))?;
        self.record_verdict(partition, first_offset, &verdict);
        if accepted.num_rows() > 0 {
            if self.writer.is_none() {
                let opened = TableWriter::open_with_schema(&self.table, self.columns_schema(), &self.config.sink).await;
                self.writer = Some(opened.inspect_err(|_| self.metrics.write_error())?);
            }
            self.summary.written += accepted.num_rows() as u64;
            self.metrics.written(accepted.num_rows() as u64);
            let written = self.writer.as_mut().expect("opened above").write(accepted).await;
            written.inspect_err(|_| self.metrics.write_error())?;
            failpoint::hit("after-batch");
        }
        if let Some(o) = next_offset {
            self.advance(partition, o);
        }
        Ok(())
    }

    /// The table schema the batches' columns are built in (see `columns_schema_id`).
    fn columns_schema(&self) -> iceberg::spec::SchemaRef {
        let metadata = self.table.metadata();
        metadata.schema_by_id(self.columns_schema_id).cloned().unwrap_or_else(|| metadata.current_schema().clone())
    }

    /// Sets the lag gauges from the cached high watermarks (no broker request) and publishes
    /// the run's progress.
    fn refresh(&mut self, consumer: &GroupConsumer) {
        self.last_refresh = Instant::now();
        let topic = self.topic.name.as_str();
        let (Ok(assigned), Ok(read_at)) = (consumer.assignment(), consumer.position()) else { return };
        let mut behind = None;
        for e in assigned.elements_for_topic(topic) {
            let p = e.partition();
            let Some(high) = consumer.context().high_watermark(topic, p) else { continue };
            let position = read_at.find_partition(topic, p).and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            });
            // Before the first commit of a partition the table's offset is not known
            // here; its read position is the closest figure.
            if let Some(base) = self.table_offsets.get(&p).copied().or(position) {
                self.metrics.consumer_lag(p, (high - base).max(0));
            }
            if let Some(o) = position {
                *behind.get_or_insert(0) += (high - o).max(0) as u64;
            }
        }
        self.publish_progress(behind);
    }

    fn publish_progress(&self, behind: Option<u64>) {
        if let Some(tx) = &self.progress {
            let s = &self.summary;
            tx.send_replace(Progress {
                consumed: s.consumed,
                written: s.written,
                rejected: s.rejected,
                undecodable: s.undecodable,
                commits: s.commits,
                behind,
            });
        }
    }

    /// Everything of `partition` below `next` is in the writer or set aside: commit it next time.
    fn advance(&mut self, partition: i32, next: i64) {
        self.pending.insert(partition, next);
        self.share_held();
    }

    /// Publishes what this instance holds uncommitted to the rebalance callback.
    fn share_held(&self) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.next.clone_from(&self.pending);
        held.from.clone_from(&self.uncommitted_from);
    }

    /// Counts a verdict and logs it once per batch (never per record).
    fn record_verdict(&mut self, partition: i32, first_offset: i64, verdict: &Verdict) {
        for r in &verdict.rejected {
            *self.summary.rejected_by_code.entry(r.code.clone()).or_default() += 1;
            self.metrics.rejected(&r.code, 1);
        }
        self.summary.rejected += verdict.rejected.len() as u64;
        for e in &verdict.events {
            *self.summary.sequence_events.entry(e.kind).or_default() += 1;
            self.metrics.sequence_events(e.kind.as_str(), 1);
        }
        if let Some(r) = verdict.rejected.first() {
            tracing::info!(topic = %self.topic.name, partition, batch_first_offset = first_offset,
                rejected = verdict.rejected.len(), first_code = %r.code, first_reason = %r.message, "batch had rejections");
        }
    }

    /// Writes the validator state of every partition committed now, beside the data.
    async fn write_states(&mut self) -> Result<StateFiles> {
        let mut files = StateFiles::new();
        for &p in self.pending.keys() {
            let state = match self.partitions.get_mut(&p).and_then(|b| b.validator.as_mut()) {
                Some(v) => v.snapshot()?,
                None => match self.revoked_states.get(&p) {
                    Some(s) => s.clone(),
                    None => continue,
                },
            };
            files.insert(p, write_state(&self.table, &self.topic.name, p, &state).await?);
        }
        Ok(files)
    }

    /// Acts on rebalances: a failure to read the table's offsets stops the run; partitions
    /// assigned at the table's offsets are noted so the group's offsets catch up.
    fn apply_assignment_news(&mut self, news: AssignmentNews) -> Result<()> {
        if let Some(failure) = news.failure {
            return Err(Error::Topic { topic: self.topic.name.clone(), message: failure });
        }
        for (topic, p) in news.revoked {
            // Records still in the batch are not in the writer: drop them; the next owner
            // reads them from the table's offsets. Records already in the writer are
            // committed, and the conflict check keeps either copy from landing twice.
            if topic == self.topic.name
                && let Some(mut batch) = self.partitions.remove(&p)
            {
                tracing::info!(partition = p, "dropped the unwritten records of a revoked partition");
                // Its validated records may still be in the writer: their state goes with them.
                if let Some(v) = batch.validator.as_mut()
                    && self.pending.contains_key(&p)
                {
                    self.revoked_states.insert(p, v.snapshot()?);
                }
            }
            self.group_catch_up.remove(&p);
            if topic == self.topic.name && self.table_offsets.remove(&p).is_some() {
                self.metrics.consumer_lag(p, 0);
            }
        }
        for ((topic, p), o) in news.started_at {
            if topic == self.topic.name {
                self.group_catch_up.insert(p, o);
                self.table_offsets.insert(p, o);
            }
        }
        Ok(())
    }

    fn commit_due(&self, now: Instant, interval: Duration) -> bool {
        let (rows, bytes) = self.writer.as_ref().map_or((0, 0), |w| (w.rows(), w.bytes()));
        rows >= self.config.commit.max_records
            || bytes >= self.config.commit.max_bytes
            || ((!self.pending.is_empty() || !self.group_catch_up.is_empty())
                && now.saturating_duration_since(self.last_commit) >= interval)
    }

    /// Commits the written files and offsets to Iceberg, then the offsets to the group.
    async fn commit(&mut self, consumer: &GroupConsumer) -> Result<()> {
        self.last_commit = Instant::now();
        if self.pending.is_empty() {
            if !self.group_catch_up.is_empty() {
                // The table already holds these offsets: only the group is behind.
                let catch_up = std::mem::take(&mut self.group_catch_up);
                self.commit_group(consumer, &catch_up);
                tracing::info!(offsets = %crate::sink::offsets::render(&catch_up), "group offsets caught up with the table");
            }
            return Ok(());
        }
        let started = Instant::now();
        let files = match self.writer.take() {
            Some(w) => w.close().await.inspect_err(|_| self.metrics.write_error())?,
            None => Vec::new(),
        };
        if let Some(dl) = self.dead_letters.as_mut() {
            // A record set aside counts as done only once the dead-letter topic has it.
            let acknowledged = dl.flush().await?;
            if acknowledged > 0 {
                tracing::info!(dlq = dl.topic(), acknowledged, "dead letters acknowledged");
            }
        }
        if let Some(events) = self.events.as_mut()
            && !self.pending_events.is_empty()
        {
            let added = events
                .commit(&self.catalog, &self.config.sink, &self.topic.name, &self.pending_events, &self.pending)
                .await?;
            self.summary.events_recorded += added;
            self.pending_events.clear();
            tracing::info!(events_table = %events.identifier(), added, "sequence events committed");
        }
        let states = self.write_states().await?;
        failpoint::hit("after-files-closed");
        let file_count = files.len();
        let records: u64 = files.iter().map(|f| f.record_count()).sum();
        let bytes: u64 = files.iter().map(|f| f.file_size_in_bytes()).sum();
        let mut attempts = 0;
        loop {
            attempts += 1;
            if attempts > MAX_COMMIT_ATTEMPTS {
                return Err(Error::Topic {
                    topic: self.topic.name.clone(),
                    message: format!(
                        "{MAX_COMMIT_ATTEMPTS} commits in a row conflicted with other writers of {}",
                        self.summary.table
                    ),
                });
            }
            let outcome = append_with_offsets(
                &self.catalog,
                &self.table,
                files.clone(),
                &self.topic.name,
                &self.pending,
                &states,
            )
            .await
            .inspect_err(|_| self.metrics.commit_error())?;
            match outcome {
                CommitOutcome::Committed(table) => {
                    self.table = table;
                    break;
                }
                CommitOutcome::Conflict => {
                    self.summary.commit_conflicts += 1;
                    self.metrics.commit_conflict();
                    if !self.resolve_conflict(consumer, records).await? {
                        return Ok(());
                    }
                }
            }
        }
        failpoint::hit("after-table-commit");
        // Only now, with the data durable in the table, may the group move on.
        let mut group = std::mem::take(&mut self.group_catch_up);
        group.extend(self.pending.iter().map(|(&p, &o)| (p, o)));
        self.commit_group(consumer, &group);
        self.summary.commits += 1;
        self.metrics.committed(started.elapsed(), now_micros() as f64 / 1e6);
        self.metrics.files_written(file_count as u64, bytes);
        tracing::info!(
            table = %self.summary.table,
            snapshot_id = self.table.metadata().current_snapshot().map(|s| s.snapshot_id()),
            records, files = file_count, bytes,
            offsets = %crate::sink::offsets::render_ranges(&self.uncommitted_from, &self.pending),
            duration_ms = started.elapsed().as_millis() as u64,
            "committed"
        );
        self.table_offsets.extend(self.pending.iter().map(|(&p, &o)| (p, o)));
        self.forget_committed();
        self.revoked_states.clear();
        self.share_held();
        Ok(())
    }

    /// After a commit: what is still held uncommitted starts where the commit ended. Records
    /// read before the commit but still in a partition's batch stay held: forgetting them
    /// would let another writer's commit of the same offsets go unnoticed.
    fn forget_committed(&mut self) {
        let committed = std::mem::take(&mut self.pending);
        self.uncommitted_from.retain(|p, from| match committed.get(p) {
            None => true,
            Some(&done) => {
                let read_past = self.partitions.get(p).and_then(|b| b.next_offset).is_some_and(|next| next > done);
                *from = done;
                read_past
            }
        });
    }

    /// After a conflict: reloads the table and checks whether another writer committed
    /// offsets we hold records for. If not, returns true to re-apply our files on the new
    /// version. If so, drops everything uncommitted (the files stay as orphans no snapshot
    /// references), rewinds our partitions to the table's offsets, and returns false.
    async fn resolve_conflict(&mut self, consumer: &GroupConsumer, records: u64) -> Result<bool> {
        let fresh = self.catalog.load(&self.table_name).await?.ok_or_else(|| Error::Topic {
            topic: self.topic.name.clone(),
            message: format!("table {} disappeared during a commit", self.summary.table),
        })?;
        let stored = stored_offsets(&fresh, &self.topic.name);
        for (p, o) in self.table_offsets.iter_mut() {
            if let Some(&s) = stored.get(p) {
                *o = s;
            }
        }
        self.table = fresh;
        let overlap: Vec<i32> = self
            .uncommitted_from
            .iter()
            .filter(|&(p, from)| stored.get(p).is_some_and(|s| s > from))
            .map(|(&p, _)| p)
            .collect();
        if overlap.is_empty() {
            tracing::info!(table = %self.summary.table, "commit conflict with another writer's disjoint partitions; re-applying");
            return Ok(true);
        }
        tracing::warn!(table = %self.summary.table, partitions = ?overlap, records,
            "another writer committed records this instance holds; dropping uncommitted data and re-reading from the table's offsets");
        self.summary.dropped_already_committed += records;
        self.summary.written -= records.min(self.summary.written);
        let rewind = std::mem::take(&mut self.uncommitted_from);
        self.rewound.extend(rewind.keys().copied());
        self.pending.clear();
        self.revoked_states.clear();
        // Their records are read again and their events reported again; the events table
        // already holds those it committed and drops the repeats.
        self.pending_events.clear();
        self.share_held();
        for (p, from) in rewind {
            // The partition's batch and validator go too: the validator saw the dropped records.
            self.partitions.remove(&p);
            let to = stored.get(&p).copied().unwrap_or(from);
            if let Err(e) = consumer.seek(&self.topic.name, p, Offset::Offset(to), BROKER_REQUEST_TIMEOUT) {
                // Not ours any more: its next owner starts at the table's offsets anyway.
                tracing::info!(partition = p, error = %e, "not rewound (no longer assigned)");
            }
        }
        Ok(false)
    }

    /// Commits offsets to the group. The table is the truth, so a failure (e.g. the
    /// partition moved to another member meanwhile) is logged, not fatal.
    fn commit_group(&self, consumer: &GroupConsumer, offsets: &PartitionOffsets) {
        if let Err(e) = commit_offsets(consumer, &self.topic.name, offsets) {
            tracing::warn!(error = %e, "group offset commit failed; the table holds the offsets");
        }
    }
}

/// Where a topic's reader schema came from: its schema file and the writer schema ids merged in.
struct SchemaOrigin {
    file: String,
    ids: Vec<u32>,
}

impl SchemaOrigin {
    fn describe(&self) -> String {
        match self.ids.as_slice() {
            [] => self.file.clone(),
            ids => format!(
                "{} with schema ids {}",
                self.file,
                ids.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// The error that stops a topic whose new writer schema (`named`) the table cannot take.
    fn incompatible(&self, topic: &str, named: &str, e: &crate::decode::evolve::Incompatible) -> Error {
        let field = if e.field.is_empty() { String::new() } else { format!("field `{}` ", e.field) };
        Error::Topic {
            topic: topic.to_string(),
            message: format!(
                "schema id {named} is incompatible with the table's schema (from {}): {field}{}; \
                 stopping before any record of it is written",
                self.describe(),
                e.message
            ),
        }
    }
}

/// Evolves `table` so it has every column of `desired` with a type that holds its values.
/// Another instance may evolve the same table at the same moment: a conflict re-plans on the
/// table as it then is.
async fn evolve_table(
    catalog: &TableCatalog,
    mut table: Table,
    desired: &iceberg::spec::Schema,
    topic: &str,
    origin: &str,
) -> Result<Table> {
    const ATTEMPTS: u32 = 3;
    for attempt in 1..=ATTEMPTS {
        let current = table.metadata().current_schema().clone();
        let change = evolve::plan(&current, desired).map_err(|message| Error::Topic {
            topic: topic.to_string(),
            message: format!("the table cannot take the schema from {origin}: {message}"),
        })?;
        if change.is_empty() {
            return Ok(table);
        }
        match evolve::apply(catalog, &table, &change, topic).await {
            Ok(evolved) => {
                tracing::info!(topic, table = %evolved.identifier(), change = %change.describe(&current),
                    schema_id = evolved.metadata().current_schema_id(), "table schema evolved");
                return Ok(evolved);
            }
            Err(e) if attempt < ATTEMPTS => {
                tracing::warn!(topic, error = %e, "evolving the table failed; reloading and trying again");
                let ident = table.identifier().name().to_string();
                table = catalog.load(&ident).await?.unwrap_or(table);
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("the last attempt returns")
}

fn now_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}
