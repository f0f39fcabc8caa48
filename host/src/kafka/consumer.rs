//! The group consumer: partitions start at the table's offsets, manual commits only, lag from watermarks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol, StreamConsumer};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientContext, Offset, Statistics, TopicPartitionList};

use crate::config::{KafkaConfig, OffsetLostPolicy, OffsetReset};
use crate::error::{Error, Result};
use crate::kafka::base_client_config;
use crate::kafka::log_bounds::{LostRange, StartCheck};

/// Time allowed for a metadata, watermark or offset request to the broker.
pub const BROKER_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Where newly assigned partitions start reading: the next offsets stored in the table.
/// Called inside the rebalance callback, so it must answer synchronously.
pub trait StartOffsets: Send + Sync + 'static {
    /// The table's next offset per partition of `topic`; an error names what failed.
    fn load(&self, topic: &str) -> std::result::Result<BTreeMap<i32, i64>, String>;

    /// What to do when `topic`'s stored offset is below its log's start.
    fn on_offset_lost(&self, topic: &str) -> OffsetLostPolicy;
}

/// What rebalances did since the pipeline last looked.
#[derive(Debug, Default)]
pub struct AssignmentNews {
    /// (topic, partition) → the table offset the partition was assigned at.
    pub started_at: BTreeMap<(String, i32), i64>,
    /// (topic, partition) → where a partition the table stores no offset for was assigned
    /// (the group's offset, or the log's start or end), and whether by `auto_offset_reset`.
    /// Not a table offset: the ledger does not take it, only an offset out of range before
    /// its first record needs it.
    pub started_unstored: BTreeMap<(String, i32), (i64, bool)>,
    /// Partitions given up.
    pub revoked: Vec<(String, i32)>,
    /// Records deleted from the log before they were read, skipped under `on_offset_lost = "skip"`.
    pub lost: Vec<(String, LostRange)>,
    /// Why the table's offsets could not be read or used; the run must stop.
    pub failure: Option<String>,
}

/// Assigns partitions at the offsets stored in the table (not the group's), and logs
/// every assignment change: the table is the truth, so a crash between the table commit
/// and the group commit never replays committed records.
pub struct TableOffsetsContext {
    start: Box<dyn StartOffsets>,
    /// Where a partition without a table or group offset starts.
    reset: OffsetReset,
    news: Mutex<AssignmentNews>,
    /// Set with every piece of news, so the per-message check is one atomic load.
    has_news: AtomicBool,
    /// (topic, partition) → high watermark, from librdkafka's statistics: the lag gauges
    /// need them every second, and asking the broker that often would cost a request per partition.
    high_watermarks: Mutex<BTreeMap<(String, i32), i64>>,
}

impl TableOffsetsContext {
    pub fn new(start: Box<dyn StartOffsets>, reset: OffsetReset) -> Self {
        Self {
            start,
            reset,
            news: Mutex::new(AssignmentNews::default()),
            has_news: AtomicBool::new(false),
            high_watermarks: Mutex::new(BTreeMap::new()),
        }
    }

    /// The high watermark of `topic`/`partition` in the latest statistics, if known.
    pub fn high_watermark(&self, topic: &str, partition: i32) -> Option<i64> {
        let marks = self.high_watermarks.lock().unwrap_or_else(|e| e.into_inner());
        marks.get(&(topic.to_string(), partition)).copied().filter(|&h| h >= 0)
    }

    /// Takes what happened since the last call, if anything did.
    pub fn take_news(&self) -> Option<AssignmentNews> {
        if !self.has_news.swap(false, Ordering::AcqRel) {
            return None;
        }
        Some(std::mem::take(&mut *self.news.lock().unwrap_or_else(|e| e.into_inner())))
    }

    fn assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let mut news = self.news.lock().unwrap_or_else(|e| e.into_inner());
        let topics: BTreeSet<String> = tpl.elements().iter().map(|e| e.topic().to_string()).collect();
        for topic in topics {
            match self.start.load(&topic) {
                Ok(stored) => {
                    let check = self.check_log_bounds(consumer, tpl, &topic, stored);
                    if let Some(failure) = check.failure(&topic) {
                        news.failure = Some(failure);
                    }
                    for (p, o) in &check.starts {
                        if tpl.set_partition_offset(&topic, *p, Offset::Offset(*o)).is_ok() {
                            news.started_at.insert((topic.clone(), *p), *o);
                        }
                    }
                    let unstored: Vec<i32> = tpl
                        .elements_for_topic(&topic)
                        .iter()
                        .map(|e| e.partition())
                        .filter(|p| !check.judged(*p))
                        .collect();
                    match self.start_unstored(consumer, tpl, &topic, &unstored) {
                        Ok((starts, skipped)) => {
                            news.started_unstored.extend(starts.into_iter().map(|(p, o)| ((topic.clone(), p), o)));
                            news.lost.extend(skipped.into_iter().map(|r| (topic.clone(), r)));
                        }
                        Err(failure) => {
                            news.failure =
                                Some(news.failure.take().map_or(failure.clone(), |f| format!("{f}; {failure}")))
                        }
                    }
                    news.lost.extend(check.skipped.into_iter().map(|r| (topic.clone(), r)));
                }
                Err(e) => news.failure = Some(format!("reading the offsets stored in the table for {topic}: {e}")),
            }
        }
        let result = match consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => consumer.incremental_assign(tpl),
            _ => consumer.assign(tpl),
        };
        match result {
            Ok(()) => tracing::info!(partitions = %describe(tpl), "partitions assigned"),
            Err(e) => news.failure = Some(format!("assigning {}: {e}", describe(tpl))),
        }
        self.has_news.store(true, Ordering::Release);
    }

    /// Checks each assigned partition's stored offset against its log, asking the broker for
    /// its bounds: librdkafka would otherwise apply `auto.offset.reset` to an offset out of
    /// range without a word, losing records or reading a recreated topic into the old table.
    fn check_log_bounds(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &TopicPartitionList,
        topic: &str,
        stored: BTreeMap<i32, i64>,
    ) -> StartCheck {
        let policy = self.start.on_offset_lost(topic);
        let mut check = StartCheck::default();
        for (p, o) in stored.into_iter().filter(|&(p, _)| tpl.find_partition(topic, p).is_some()) {
            match consumer.fetch_watermarks(topic, p, BROKER_REQUEST_TIMEOUT) {
                Ok((low, high)) => check.partition(p, o, low, high, policy),
                Err(e) => check.unknown(format!("reading the log bounds of {topic}/{p}: {e}")),
            }
        }
        check
    }

    /// Partitions the table stores no offset for start at the group's committed offset,
    /// checked against the log like a table's, else at `auto_offset_reset` (the log's start
    /// or end, read from the broker): set here, as exact offsets, since librdkafka's own reset
    /// (`auto.offset.reset = error` for us) would be silent. Returns where each starts, and
    /// the losses skipped below the group's offsets under `on_offset_lost = "skip"`.
    fn start_unstored(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &mut TopicPartitionList,
        topic: &str,
        partitions: &[i32],
    ) -> std::result::Result<(BTreeMap<i32, (i64, bool)>, Vec<LostRange>), String> {
        if partitions.is_empty() {
            return Ok(Default::default());
        }
        let mut ask = TopicPartitionList::new();
        for &p in partitions {
            ask.add_partition(topic, p);
        }
        let committed = consumer
            .committed_offsets(ask, BROKER_REQUEST_TIMEOUT)
            .map_err(|e| format!("reading the group's committed offsets of {topic}: {e}"))?;
        let mut group = BTreeMap::new();
        let mut starts = BTreeMap::new();
        for e in committed.elements_for_topic(topic) {
            let p = e.partition();
            if let Offset::Offset(o) = e.offset() {
                group.insert(p, o);
                continue;
            }
            let (low, high) = consumer
                .fetch_watermarks(topic, p, BROKER_REQUEST_TIMEOUT)
                .map_err(|e| format!("reading the log bounds of {topic}/{p}: {e}"))?;
            starts.insert(p, (if self.reset == OffsetReset::Earliest { low } else { high }, true));
        }
        let check = self.check_log_bounds(consumer, tpl, topic, group);
        if let Some(failure) = check.failure(topic) {
            return Err(format!("{failure} (the table stores no offset for these partitions; the group's were used)"));
        }
        starts.extend(check.starts.into_iter().map(|(p, o)| (p, (o, false))));
        for (&p, &(o, _)) in &starts {
            let _ = tpl.set_partition_offset(topic, p, Offset::Offset(o));
        }
        Ok((starts, check.skipped))
    }

    fn revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let mut news = self.news.lock().unwrap_or_else(|e| e.into_inner());
        news.revoked.extend(tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())));
        self.has_news.store(true, Ordering::Release);
        let result = match consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => consumer.incremental_unassign(tpl),
            _ => consumer.unassign(),
        };
        match result {
            Ok(()) => tracing::info!(partitions = %describe(tpl), "partitions revoked"),
            Err(e) => tracing::warn!(partitions = %describe(tpl), error = %e, "unassigning failed"),
        }
    }
}

impl ClientContext for TableOffsetsContext {
    fn stats(&self, statistics: Statistics) {
        let mut marks = self.high_watermarks.lock().unwrap_or_else(|e| e.into_inner());
        for (topic, t) in statistics.topics {
            // Partition -1 is librdkafka's internal unassigned-messages queue.
            for (p, part) in t.partitions.into_iter().filter(|(p, _)| *p >= 0) {
                marks.insert((topic.clone(), p), part.hi_offset);
            }
        }
    }
}

impl ConsumerContext for TableOffsetsContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => self.revoke(consumer, tpl),
            other => {
                let code: RDKafkaErrorCode = other.into();
                tracing::warn!(error = %code, "rebalance failed; giving up the assignment");
                let _ = consumer.unassign();
            }
        }
    }
}

fn describe(tpl: &TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => format!("{}/{}@{o}", e.topic(), e.partition()),
            _ => format!("{}/{}", e.topic(), e.partition()),
        })
        .collect::<Vec<_>>()
        .join(",")
}

pub type GroupConsumer = StreamConsumer<TableOffsetsContext>;

/// librdkafka's statistics period; ours is 1 s (the lag gauges' refresh) unless set in `kafka.options`.
const STATISTICS_INTERVAL: &str = "statistics.interval.ms";

/// Fetch settings of the ingesting consumer where librdkafka's defaults hold it back; each
/// applies unless `kafka.options` sets it. librdkafka keeps `queued.min.messages` per partition
/// (100,000 by default: hundreds of MiB across a few partitions of small records) and, once
/// that queue is full, waits `fetch.queue.backoff.ms` (1 s by default) before fetching again.
/// An ingester that drains the queue in less than that second sat idle for the rest of it: the
/// benchmark ran at less than half its speed. 30,000 messages still covers a fetch round trip.
pub const FETCH_DEFAULTS: [(&str, &str); 2] = [("fetch.queue.backoff.ms", "20"), ("queued.min.messages", "30000")];

/// A consumer in the configured group with auto-commit and auto offset store off: offsets
/// move only after the data is committed to Iceberg, and partitions start at the table's offsets.
pub fn group_consumer(kafka: &KafkaConfig, start: Box<dyn StartOffsets>) -> Result<GroupConsumer> {
    let mut c = base_client_config(kafka);
    c.set("group.id", &kafka.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // Never reset silently: an offset out of range comes to the loop as an error, which
        // checks the log's bounds (records lost, or the topic recreated). `auto_offset_reset`
        // is applied by the rebalance callback to partitions with no offset at all.
        .set("auto.offset.reset", "error")
        .set("enable.partition.eof", "false");
    if let Some(id) = &kafka.group_instance_id {
        c.set("group.instance.id", id);
    }
    for (key, value) in [(STATISTICS_INTERVAL, "1000")].into_iter().chain(FETCH_DEFAULTS) {
        if !kafka.options.contains_key(key) {
            c.set(key, value);
        }
    }
    c.create_with_context(TableOffsetsContext::new(start, kafka.auto_offset_reset)).map_err(|source| Error::Kafka {
        context: format!("creating a consumer for group {} at {}", kafka.group_id, kafka.bootstrap_servers),
        source,
    })
}

/// Commits `offsets` (partition → next offset) of `topic` for the consumer's group, synchronously.
pub fn commit_offsets<X: ConsumerContext, C: Consumer<X>>(
    consumer: &C,
    topic: &str,
    offsets: &BTreeMap<i32, i64>,
) -> Result<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for (&p, &o) in offsets {
        tpl.add_partition_offset(topic, p, Offset::Offset(o))
            .map_err(|source| Error::Kafka { context: format!("listing offset {o} of {topic}/{p}"), source })?;
    }
    consumer
        .commit(&tpl, CommitMode::Sync)
        .map_err(|source| Error::Kafka { context: format!("committing group offsets of {topic}"), source })
}
