//! The consume loop: Kafka → decode → partition buffers → validator → router → writer → commit, wiring parts that own their rules.

mod assignment;
mod buffer;
mod commit;
mod event_log;
mod lag;
pub(crate) mod ledger;
mod out_of_range;
mod progress;
mod rebalance;
mod records;
pub(crate) mod route;
mod run_events;
mod summary;
mod topic_identity;

pub use progress::Progress;
pub use summary::RunSummary;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::Message;
use rdkafka::consumer::Consumer;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::{Config, TopicConfig};
use crate::decode::avro::TopicDecoder;
use crate::decode::registry::SchemaRegistry;
use crate::error::{Error, Result};
use crate::kafka::consumer::{GroupConsumer, group_consumer};
use crate::kafka::dlq::DeadLetters;
use crate::kafka::group::GroupView;
use crate::kafka::log_bounds::LostRange;
use crate::kafka::outage::{BrokerOutage, OnError};
use crate::sandbox::{GuestEngine, ValidatorModule};
use crate::schema::{Learned, SchemaOrigin, TopicTable};
use crate::sink::events::{EventRow, EventsTable};
use crate::sink::offsets::stored_topic_id;
use crate::sink::writer::TableWriter;
use buffer::PartitionBuffer;
use ledger::OffsetLedger;
use run_events::{RunEvent, RunEvents};

/// When a `consume` run ends.
#[derive(Debug, Clone)]
pub struct RunBounds {
    /// Stop after this many messages (all of them, decodable or not).
    pub max_messages: Option<u64>,
    /// Stop when no message arrived for this long; `None` runs until interrupted.
    pub idle_timeout: Option<Duration>,
}

/// A consume run over one topic.
pub struct Pipeline<'a> {
    config: &'a Config,
    topic: &'a TopicConfig,
    decoder: TopicDecoder,
    /// Where writer schemas of ids the decoder does not know come from.
    registry: Option<SchemaRegistry>,
    origin: SchemaOrigin,
    table: TopicTable,
    writer: Option<TableWriter>,
    module: Option<ValidatorModule>,
    dead_letters: Option<DeadLetters>,
    /// The sequence-events table, for topics with a validator, and the events of records in
    /// the writer, committed to it before the data.
    events: Option<EventsTable>,
    pending_events: Vec<EventRow>,
    buffers: BTreeMap<i32, PartitionBuffer>,
    ledger: OffsetLedger,
    /// Records skipped under `on_offset_lost = "skip"`, for the next commit's summary.
    lost: Vec<LostRange>,
    run: RunEvents,
    last_commit: Instant,
    last_refresh: Instant,
    /// Since when, and how, failed writes of data files are retried (`None` after a commit).
    storage_retry: Option<(crate::sink::retry::CommitRetry, Instant)>,
    /// The run's final commit is under way: a failure can no longer be retried by reading again.
    finishing: bool,
    /// Where partitions the table stores no offset for were assigned, and whether by
    /// `auto_offset_reset` rather than the group's offset (see `out_of_range`).
    unstored_starts: BTreeMap<i32, (i64, bool)>,
    /// A commit dropped what it held to read it again: the idle clock restarts, or a bounded
    /// run could end before the records come back.
    reading_again: bool,
    /// The topic's id, checked against the table's at the start and before every commit.
    identity: topic_identity::TopicIdentity,
    /// A client of its own for questions to the broker during the run: on the consumer's
    /// connections they would wait behind its fetch long-polls (about 500 ms each).
    broker: GroupView,
    /// The broker did not answer the last topic-id check: the retry state, and when the
    /// commit is next due again.
    id_check_deferred: Option<(crate::sink::retry::CommitRetry, Instant)>,
    /// The final commit's budget for the topic-id check.
    final_id_retry: Option<(crate::sink::retry::CommitRetry, Instant)>,
    /// When the tables are next maintained.
    maintenance: crate::maintenance::schedule::Schedule,
    /// A signal asked the run to stop: its final commit is not followed by maintenance.
    shutting_down: bool,
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
        // The module first: a topic that cannot start must not leave a new table behind.
        let module = match &topic.validator {
            Some(v) => {
                let module = engine.load_pinned(&v.module, v.sha256.as_deref())?;
                tracing::info!(module = %v.module.display(), sha256 = module.sha256(), pinned = v.sha256.is_some(),
                    cache = module.cache_status().as_str(), "validator module loaded");
                Some(module)
            }
            None => None,
        };
        let (decoder, origin) = crate::schema::starting_decoder(topic, registry.as_ref()).await?;
        TopicTable::check_spec(config, topic, decoder.table_schema(), &origin)?;
        let broker = GroupView::open(&config.kafka)?;
        let seen_id = require_topic(config, topic, &broker)?;
        // Before the table is opened, which may evolve it: nothing is changed for a recreated topic.
        let catalog = std::sync::Arc::new(crate::sink::catalog::TableCatalog::open(&config.catalog).await?);
        let existing = catalog.load(&topic.table_name()).await?;
        let stored_id = existing.as_ref().map(|t| stored_topic_id(t, &topic.name)).transpose()?.flatten();
        let mut identity = topic_identity::TopicIdentity::default();
        let table_ident = catalog.ident(&topic.table_name()).to_string();
        identity.observe(&topic.name, &table_ident, stored_id.as_deref(), seen_id)?;
        let table = TopicTable::open(config, catalog, topic, decoder.table_schema(), &origin).await?;
        let dead_letters = match topic.uses_dlq() {
            true => {
                let validator = module.as_ref().map(|m| m.info()).transpose()?;
                Some(DeadLetters::open(&config.kafka, &topic.name, &topic.dlq_topic(), validator).await?)
            }
            false => None,
        };
        let events = match &topic.validator {
            Some(_) => Some(EventsTable::open(table.catalog(), &topic.events_table_name()).await?),
            None => None,
        };
        let run = RunEvents::new(RunSummary {
            topic: topic.name.clone(),
            table: table.table().identifier().to_string(),
            dlq_topic: dead_letters.as_ref().map(|d| d.topic().to_string()),
            events_table: events.as_ref().map(|e| e.identifier()),
            ..Default::default()
        });
        Ok(Self {
            config,
            topic,
            decoder,
            registry,
            origin,
            table,
            writer: None,
            module,
            dead_letters,
            events,
            pending_events: Vec::new(),
            buffers: BTreeMap::new(),
            ledger: OffsetLedger::new(),
            lost: Vec::new(),
            run,
            last_commit: Instant::now(),
            storage_retry: None,
            finishing: false,
            reading_again: false,
            identity,
            broker,
            id_check_deferred: None,
            final_id_retry: None,
            shutting_down: false,
            maintenance: crate::maintenance::schedule::Schedule::new(
                config.maintenance.enabled.then(|| Duration::from_millis(config.maintenance.interval_ms)),
                (config.maintenance.orphan_sweep_interval_ms > 0)
                    .then(|| Duration::from_millis(config.maintenance.orphan_sweep_interval_ms)),
            ),
            unstored_starts: BTreeMap::new(),
            last_refresh: Instant::now(),
        })
    }

    /// Publishes the run's [`Progress`] to `tx` about once a second.
    pub fn report_progress(&mut self, tx: tokio::sync::watch::Sender<Progress>) {
        self.run.report_progress(tx);
    }

    /// Consumes until a bound is reached or `shutdown` resolves, commits, and reports.
    pub async fn run(
        mut self,
        bounds: RunBounds,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<RunSummary> {
        let started = Instant::now();
        let start = rebalance::TableStartOffsets::new(&self.table, self.ledger.shared(), self.topic.on_offset_lost);
        let consumer = group_consumer(&self.config.kafka, Box::new(start))?;
        consumer
            .subscribe(&[&self.topic.name])
            .map_err(|source| Error::Kafka { context: format!("subscribing to {}", self.topic.name), source })?;
        let poll = Duration::from_millis(self.config.kafka.poll_timeout_ms.max(1));
        let interval = Duration::from_millis(self.config.commit.interval_ms);
        let mut idle = lag::Idleness::new(started, bounds.idle_timeout);
        let mut waiting = assignment::AssignmentWait::new(&self.config.kafka, &self.topic.name);
        let mut outage = BrokerOutage::default();
        tokio::pin!(shutdown);
        tracing::info!(topic = %self.topic.name, table = %self.run.summary().table, group = %self.config.kafka.group_id, "consuming");
        loop {
            if bounds.max_messages.is_some_and(|n| self.run.summary().consumed >= n) {
                break;
            }
            // One clock read per message serves the poll deadline, idleness and the timers:
            // at a few microseconds per record, clock reads showed in profiles.
            let now = Instant::now();
            let received = tokio::select! {
                _ = &mut shutdown => {
                    tracing::info!("shutdown requested; committing what is consistent");
                    self.shutting_down = true;
                    break;
                }
                r = tokio::time::timeout_at((now + poll).into(), consumer.recv()) => r,
            };
            if let Some(news) = consumer.context().take_news() {
                self.apply_assignment_news(news)?;
            }
            match received {
                Ok(Ok(msg)) => {
                    idle.message_at(now);
                    if let Some((lasted, errors)) = outage.on_message(now) {
                        self.run.record(RunEvent::BrokerBack { lasted, errors });
                    }
                    let reread = match self.decoder.unknown_schema_id(msg.payload().unwrap_or_default()) {
                        Some(id) => self.learn_schema(id, msg.partition(), &consumer).await?,
                        None => false,
                    };
                    if !reread {
                        self.accept_message(&msg).await?;
                    }
                }
                Ok(Err(e)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::AutoOffsetReset) => {
                    self.out_of_range(&consumer, e)?;
                }
                Ok(Err(e)) => match outage.on_error(&e, now) {
                    OnError::Fatal => {
                        return Err(Error::Kafka { context: format!("consuming {}", self.topic.name), source: e });
                    }
                    began => {
                        if began == OnError::Began {
                            self.run.record(RunEvent::BrokerUnreachable(&e));
                        }
                        tokio::time::sleep(BrokerOutage::PAUSE).await;
                    }
                },
                Err(_elapsed) => {
                    // A quiet moment: hand partial batches on so the interval commit includes them.
                    self.flush_partitions().await?;
                    let assigned = consumer.assignment().map(|a| a.count() > 0).unwrap_or(false);
                    match idle.quiet(assigned) {
                        lag::Quiet::Continue => {}
                        lag::Quiet::End => break,
                        lag::Quiet::Unassigned { past_timeout } => waiting.check(past_timeout, &mut self.run)?,
                    }
                }
            }
            if self.commit_due(now, interval) {
                self.commit(&consumer).await?;
                if std::mem::take(&mut self.reading_again) {
                    idle.message_at(Instant::now());
                }
            }
            if now.saturating_duration_since(self.last_refresh) >= progress::REFRESH_INTERVAL {
                self.last_refresh = now;
                lag::refresh(&consumer, &self.topic.name, &self.ledger, &mut self.run);
            }
        }
        self.flush_partitions().await?;
        self.finishing = true;
        self.commit(&consumer).await?;
        self.run.close_log_window();
        // Leave the group before reading positions, so a rebalance in progress is not kept waiting.
        consumer.unsubscribe();
        drop(consumer);
        lag::final_positions(&self.config.kafka, &self.topic.name, &self.ledger, &mut self.run)?;
        let summary = self.run.summary_mut();
        summary.snapshot_id = self.table.table().metadata().current_snapshot().map(|s| s.snapshot_id());
        summary.duration_secs = started.elapsed().as_secs_f64();
        Ok(self.run.finish())
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
        let learned = crate::schema::learn(registry, self.decoder.table_schema(), id, &self.topic.name, &self.origin);
        let (writer, evolved, rewound) = match learned.await? {
            Learned::Unusable(reason) => {
                tracing::warn!(topic = %self.topic.name, schema_id = id, error = %reason, "schema id unusable; its records are undecodable");
                self.decoder.reject(id, reason);
                return Ok(false);
            }
            Learned::Readable(writer) => (writer, false, false),
            Learned::Evolve { writer, merged } => {
                // What was read with the old schema goes to the table with the old columns first.
                self.ledger.take_rewound();
                self.flush_partitions().await?;
                self.commit(consumer).await?;
                let rewound = self.ledger.take_rewound().contains(&partition);
                let metadata_columns = self.config.sink.metadata_columns;
                self.table.evolve_to(&merged, id, &self.origin, &self.topic.name, metadata_columns).await?;
                self.decoder.set_reader(merged);
                for buffer in self.buffers.values_mut() {
                    buffer.set_columns(self.table.columns()?);
                }
                (writer, true, rewound)
            }
        };
        self.decoder.learn(id, writer);
        self.origin.merged(id);
        tracing::info!(topic = %self.topic.name, schema_id = id, evolved, "writer schema learned");
        Ok(rewound)
    }

    /// Acts on rebalances: a failure to read the table's offsets stops the run.
    fn apply_assignment_news(&mut self, news: crate::kafka::consumer::AssignmentNews) -> Result<()> {
        if let Some(failure) = news.failure {
            return Err(Error::Topic { topic: self.topic.name.clone(), message: failure });
        }
        for (topic, p) in news.revoked.into_iter().filter(|(t, _)| *t == self.topic.name) {
            self.unstored_starts.remove(&p);
            let revoked = self.ledger.revoked(p);
            if let Some(mut buffer) = self.buffers.remove(&p) {
                tracing::info!(topic = %topic, partition = p, "dropped the unwritten records of a revoked partition");
                // Its validated records may still be in the writer: their state goes with them.
                if let (true, Some(v)) = (revoked.in_writer, buffer.validator.as_mut()) {
                    self.ledger.keep_revoked_state(p, v.snapshot()?);
                }
            }
            if revoked.was_tracked {
                self.run.record(RunEvent::Lag { partition: p, lag: 0 });
            }
        }
        for (_, range) in news.lost.into_iter().filter(|(t, _)| *t == self.topic.name) {
            self.run.record(RunEvent::RecordsLost(&range));
            self.ledger.skipped_to(range.partition, range.to);
            self.lost.push(range);
        }
        for ((topic, p), start) in news.started_unstored {
            if topic == self.topic.name {
                self.unstored_starts.insert(p, start);
            }
        }
        for ((topic, p), o) in news.started_at {
            if topic == self.topic.name {
                self.ledger.assigned(p, o);
            }
        }
        Ok(())
    }

    fn commit_due(&self, now: Instant, interval: Duration) -> bool {
        if self.id_check_deferred.as_ref().is_some_and(|(_, next)| now < *next) {
            return false;
        }
        let (rows, bytes) = self.writer.as_ref().map_or((0, 0), |w| (w.rows(), w.bytes()));
        rows >= self.config.commit.max_records
            || bytes >= self.config.commit.max_bytes
            || (self.ledger.has_work() && now.saturating_duration_since(self.last_commit) >= interval)
    }
}

/// Fails if the broker answers that `topic` does not exist, before anything (table, dead-letter
/// topic) is created for it: librdkafka would report it only later, in words of its own. A broker
/// that does not answer is left to the consumer, which reports it with the rest of the run.
/// Returns the topic's id, if the broker gives one.
fn require_topic(
    config: &Config,
    topic: &TopicConfig,
    view: &GroupView,
) -> Result<Option<crate::kafka::topic_id::TopicId>> {
    let unread = |e: Error| {
        tracing::debug!(topic = %topic.name, error = %e, "could not read the topic's metadata; its id is checked at the first commit");
        None
    };
    match view.topic_missing(&topic.name) {
        Ok(true) => Err(Error::Topic {
            topic: topic.name.clone(),
            message: format!(
                "does not exist at {} (the broker lists no partition of it); check the name, or create the topic: \
                 k2-ingest does not create source topics",
                config.kafka.bootstrap_servers
            ),
        }),
        Ok(false) => Ok(view.topic_id(&topic.name).unwrap_or_else(unread)),
        Err(e) => Ok(unread(e)),
    }
}

fn now_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}
