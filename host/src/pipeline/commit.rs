//! The commit sequence: data files closed, dead letters acknowledged, events committed, validator state written, one table commit carrying the offsets, then the group.

use std::time::{Duration, Instant};

use iceberg::table::Table;
use rdkafka::Offset;
use rdkafka::consumer::Consumer;

use crate::error::{Error, Result};
use crate::failpoint;
use crate::kafka::consumer::{BROKER_REQUEST_TIMEOUT, GroupConsumer, commit_offsets};
use crate::sink::commit::{Append, COMMIT_ID_KEY, CommitOutcome, append_with_offsets, holds_commit, new_commit_id};
use crate::sink::offsets::{PartitionOffsets, render, render_ranges, stored_offsets, stored_topic_id};
use crate::sink::retry::CommitRetry;
use crate::sink::state::{StateFiles, write_state};

use super::Pipeline;
use super::ledger::Conflict;
use super::run_events::{Commit, RunEvent, RunEvents};

/// Commits re-applied after conflicts with other writers' disjoint commits, before giving up.
const MAX_COMMIT_CONFLICTS: u32 = 20;

/// How a commit conflict was resolved.
enum Resolved {
    /// Another writer committed other partitions: our files go on top of its snapshot.
    Reapply,
    /// An earlier attempt of this very commit, whose outcome was unknown, is in the table;
    /// `on_top`: other writers committed after it.
    Landed { on_top: bool },
    /// Another writer committed records we hold: everything uncommitted was dropped.
    Dropped,
}

/// Runs a blocking broker call without holding up the runtime's other tasks (the signal
/// watcher, metrics, progress) where the runtime can move them to another thread.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// After a failed commit attempt: waits as `retry` says and returns, or returns the error
/// once it is not transient or the budget is spent. Each wait is one run event.
async fn back_off(
    run: &mut RunEvents,
    retry: &mut CommitRetry,
    since: Instant,
    error: Error,
    table: &str,
) -> Result<()> {
    let Some(wait) = retry.next_wait(&error, since.elapsed()) else {
        run.record(RunEvent::CommitFailed);
        return Err(error);
    };
    run.record(RunEvent::CommitRetried { table, error: &error, wait, attempt: retry.failures() });
    tokio::time::sleep(wait).await;
    Ok(())
}

impl Pipeline<'_> {
    /// Stops the run before anything of a topic deleted and created again is committed on
    /// the old topic's offsets, to the table or the group (see `topic_identity`). Unchecked
    /// is not committed: returns false when the broker did not answer, and the commit waits
    /// for a later turn (backing off, 1 s doubling to 30 s) while the loop goes on waiting
    /// out the outage. The run's final commit asks again within `commit.retry_timeout_ms`.
    async fn check_topic_id(&mut self) -> Result<bool> {
        let table = self.table.table().identifier().to_string();
        let seen = loop {
            match blocking(|| self.broker.topic_id(&self.topic.name)) {
                Ok(seen) => break seen,
                Err(error) if self.finishing => {
                    let budget = self.retry_timeout();
                    let (retry, since) =
                        self.final_id_retry.get_or_insert_with(|| (CommitRetry::new(budget), Instant::now()));
                    back_off(&mut self.run, retry, *since, error, &table).await?;
                }
                Err(error) => {
                    let retry =
                        self.id_check_deferred.get_or_insert_with(|| (CommitRetry::unbounded(), Instant::now()));
                    let Some(wait) = retry.0.next_wait(&error, Duration::ZERO) else { return Err(error) };
                    retry.1 = Instant::now() + wait;
                    let attempt = retry.0.failures();
                    self.run.record(RunEvent::CommitRetried { table: &table, error: &error, wait, attempt });
                    return Ok(false);
                }
            }
        };
        self.id_check_deferred = None;
        let stored = stored_topic_id(self.table.table(), &self.topic.name)?;
        self.identity.observe(&self.topic.name, &table, stored.as_deref(), seen)?;
        Ok(true)
    }

    /// Commits the written files and offsets to Iceberg, then the offsets to the group. Each
    /// step comes only after the one before is durable: a record set aside counts as done
    /// only once the dead-letter topic has it, and the group moves only once the table has
    /// the data.
    pub(super) async fn commit(&mut self, consumer: &GroupConsumer) -> Result<()> {
        self.last_commit = Instant::now();
        if self.ledger.has_work() && !self.check_topic_id().await? {
            return Ok(());
        }
        if let Some(catch_up) = self.ledger.take_group_catch_up() {
            // The table already holds these offsets: only the group is behind.
            self.commit_group(consumer, &catch_up);
            self.run.record(RunEvent::GroupCaughtUp { offsets: &render(&catch_up) });
            return Ok(());
        }
        if self.ledger.to_commit().is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let files = match self.writer.take() {
            Some(w) => {
                let records = w.rows();
                match w.close().await {
                    Ok(files) => files,
                    Err(e) => {
                        self.run.record(RunEvent::WriteFailed);
                        return self.abandon(consumer, e, records).await;
                    }
                }
            }
            None => Vec::new(),
        };
        if let Some(dl) = self.dead_letters.as_mut() {
            let count = dl.flush().await?;
            self.run.record(RunEvent::DeadLettersAcknowledged { topic: dl.topic(), count });
        }
        let retry_timeout = self.retry_timeout();
        if let Some(events) = self.events.as_mut()
            && !self.pending_events.is_empty()
        {
            let (catalog, sink) = (self.table.catalog(), &self.config.sink);
            let mut retry = CommitRetry::new(retry_timeout);
            let added = loop {
                // A repeated events commit adds nothing already stored, so a failure is simply tried again.
                match events
                    .commit(catalog, sink, &self.topic.name, &self.pending_events, self.ledger.to_commit())
                    .await
                {
                    Ok(added) => break added,
                    Err(e) => back_off(&mut self.run, &mut retry, started, e, &events.identifier()).await?,
                }
            };
            self.pending_events.clear();
            self.run.record(RunEvent::EventsRecorded { table: &events.identifier(), added });
        }
        let states = match self.write_states().await {
            Ok(states) => states,
            Err(e) => {
                let records = files.iter().map(|f| f.record_count()).sum();
                return self.abandon(consumer, e, records).await;
            }
        };
        failpoint::hit("after-files-closed");
        let records: u64 = files.iter().map(|f| f.record_count()).sum();
        let bytes: u64 = files.iter().map(|f| f.file_size_in_bytes()).sum();
        let file_count = files.len() as u64;
        let commit_id = new_commit_id();
        let mut retry = CommitRetry::new(self.retry_timeout());
        let tried = Instant::now();
        let mut conflicts = 0;
        let mut landed_under_others = false;
        loop {
            let (catalog, base) = (self.table.catalog(), self.table.table());
            let append = Append {
                topic: &self.topic.name,
                advanced: self.ledger.to_commit(),
                states: &states,
                lost: &self.lost,
                commit_id: &commit_id,
                topic_id: self.identity.current(),
            };
            let outcome = append_with_offsets(catalog, base, files.clone(), &append).await;
            let conflicted = match outcome {
                Ok(CommitOutcome::Committed(table)) => {
                    self.table.set(table);
                    self.lost.clear();
                    break;
                }
                Ok(CommitOutcome::Conflict) => true,
                // Tried again on the same base: had this attempt landed after all, the next
                // one conflicts and `resolve_conflict` finds it by its id. Unless the table
                // moved meanwhile: a base whose files another instance's maintenance expired
                // fails to read however often it is tried, so a moved table is resolved as a
                // conflict (which also finds an attempt that landed).
                Err(e) => {
                    let table = self.run.summary().table.clone();
                    back_off(&mut self.run, &mut retry, tried, e, &table).await?;
                    self.table_moved().await
                }
            };
            if !conflicted {
                continue;
            }
            conflicts += 1;
            if conflicts > MAX_COMMIT_CONFLICTS {
                return Err(Error::Topic {
                    topic: self.topic.name.clone(),
                    message: format!(
                        "{MAX_COMMIT_CONFLICTS} commits in a row conflicted with other writers of {}",
                        self.run.summary().table
                    ),
                });
            }
            match self.resolve_conflict(consumer, records, &commit_id).await? {
                Resolved::Reapply => {}
                Resolved::Landed { on_top } => {
                    landed_under_others = on_top;
                    break;
                }
                Resolved::Dropped => return Ok(()),
            }
        }
        failpoint::hit("after-table-commit");
        self.storage_retry = None;
        let ranges = render_ranges(self.ledger.uncommitted_from(), self.ledger.to_commit());
        // Only now, with the data durable in the table, may the group move on.
        let group = self.ledger.committed();
        if landed_under_others {
            // Another writer committed on top of our landed attempt, unseen by any conflict:
            // its offsets are learnt now (nothing of ours is uncommitted, so at most a seek).
            let stored = stored_offsets(self.table.table(), &self.topic.name)?;
            let seek = match self.ledger.conflict(&stored) {
                Conflict::Disjoint { seek } => seek,
                Conflict::Overlap { rewind, .. } => rewind,
            };
            for (p, to) in seek {
                self.seek(consumer, p, to)?;
            }
        }
        self.commit_group(consumer, &group);
        let commit = Commit {
            table: self.run.summary().table.clone(),
            snapshot_id: self.table.table().metadata().current_snapshot().map(|s| s.snapshot_id()),
            records,
            files: file_count,
            bytes,
            took: started.elapsed(),
            ranges,
            at_unix_secs: super::now_micros() as f64 / 1e6,
        };
        self.run.record(RunEvent::Committed(&commit));
        if !self.shutting_down
            && let Some(due) = self.maintenance.due_after_commit(Instant::now())
        {
            self.maintain(due).await;
        }
        Ok(())
    }

    /// Maintains the topic's table and its events table (see [`crate::maintenance`]), between
    /// two commits. A failure is reported and left for the next run: ingest does not depend
    /// on it. A commit of another writer in between makes it do nothing, never wait.
    async fn maintain(&mut self, due: crate::maintenance::schedule::Due) {
        let config = &self.config.maintenance;
        let catalog = self.table.catalog().clone();
        let plan = crate::maintenance::Plan { dry_run: false, sweep_orphans: due.sweep_orphans };
        match crate::maintenance::run(&catalog, self.table.table(), config, plan).await {
            Ok((table, report)) => {
                if let Some(table) = table {
                    self.table.set(table);
                }
                self.run.record(RunEvent::Maintained(&report));
            }
            Err(error) => {
                let table = self.run.summary().table.clone();
                self.run.record(RunEvent::MaintenanceFailed { table: &table, error: &error });
            }
        }
        let Some(events) = self.events.as_mut() else { return };
        match crate::maintenance::run(&catalog, events.table(), config, plan).await {
            Ok((table, report)) => {
                if let Some(table) = table {
                    events.set(table);
                }
                self.run.record(RunEvent::Maintained(&report));
            }
            Err(error) => {
                let table = events.identifier();
                self.run.record(RunEvent::MaintenanceFailed { table: &table, error: &error });
            }
        }
    }

    /// Writes the validator state of every partition committed now, beside the data.
    async fn write_states(&mut self) -> Result<StateFiles> {
        let mut files = StateFiles::new();
        let partitions: Vec<i32> = self.ledger.to_commit().keys().copied().collect();
        for p in partitions {
            let state = match self.buffers.get_mut(&p).and_then(|b| b.validator.as_mut()) {
                Some(v) => v.snapshot()?,
                None => match self.ledger.revoked_state(p) {
                    Some(s) => s.clone(),
                    None => continue,
                },
            };
            files.insert(p, write_state(self.table.table(), &self.topic.name, p, &state).await?);
        }
        Ok(files)
    }

    /// After a conflict: reloads the table. If it holds `commit_id`, an earlier attempt landed.
    /// Else the ledger judges whether another writer committed offsets we hold records for.
    /// If not, our files are re-applied on the new version. If so, everything uncommitted is
    /// dropped (the files stay as orphans no snapshot references) and our partitions are
    /// sought back to the table's offsets.
    async fn resolve_conflict(&mut self, consumer: &GroupConsumer, records: u64, commit_id: &str) -> Result<Resolved> {
        let fresh = self.reload().await?;
        if holds_commit(&fresh, commit_id) {
            let on_top = fresh
                .metadata()
                .current_snapshot()
                .and_then(|s| s.summary().additional_properties.get(COMMIT_ID_KEY))
                .map(String::as_str)
                != Some(commit_id);
            tracing::info!(table = %self.run.summary().table, commit_id, "an attempt whose outcome was unknown had committed");
            self.table.set(fresh);
            self.lost.clear();
            return Ok(Resolved::Landed { on_top });
        }
        self.run.record(RunEvent::CommitConflict);
        let stored = stored_offsets(&fresh, &self.topic.name)?;
        self.table.set(fresh);
        self.lost = std::mem::take(&mut self.lost)
            .into_iter()
            .filter_map(|r| r.after(stored.get(&r.partition).copied()))
            .collect();
        let table = &self.run.summary().table;
        let (overlapping, rewind) = match self.ledger.conflict(&stored) {
            Conflict::Disjoint { seek } => {
                tracing::info!(%table, "commit conflict with another writer's disjoint partitions; re-applying");
                let assigned = consumer.assignment().unwrap_or_default();
                for (p, to) in seek.into_iter().filter(|&(p, _)| assigned.find_partition(&self.topic.name, p).is_some())
                {
                    tracing::info!(
                        partition = p,
                        offset = to,
                        "another writer committed past our read position; seeking forward"
                    );
                    self.seek(consumer, p, to)?;
                }
                return Ok(Resolved::Reapply);
            }
            Conflict::Overlap { overlapping, rewind } => (overlapping, rewind),
        };
        tracing::warn!(%table, partitions = ?overlapping, records,
            "another writer committed records this instance holds; dropping uncommitted data and re-reading from the table's offsets");
        self.run.record(RunEvent::DroppedAlreadyCommitted(records));
        // Their records are read again and their events reported again; the events table
        // already holds those it committed and drops the repeats.
        self.pending_events.clear();
        for (p, to) in rewind {
            // The partition's buffer and validator go too: the validator saw the dropped records.
            self.buffers.remove(&p);
            self.seek(consumer, p, to)?;
        }
        self.reading_again = true;
        Ok(Resolved::Dropped)
    }

    /// Whether the table's current snapshot is no longer the one the next commit builds on.
    /// Unknown (the catalog unreachable) counts as not moved: the commit is tried as before.
    async fn table_moved(&self) -> bool {
        let base = self.table.table().metadata().current_snapshot_id();
        matches!(self.table.reload().await, Ok(Some(fresh)) if fresh.metadata().current_snapshot_id() != base)
    }

    /// The table as the catalog holds it now, reloads that fail transiently tried again.
    async fn reload(&mut self) -> Result<Table> {
        let mut retry = CommitRetry::new(self.retry_timeout());
        let tried = Instant::now();
        let fresh = loop {
            match self.table.reload().await {
                Ok(fresh) => break fresh,
                Err(e) => {
                    let table = self.run.summary().table.clone();
                    back_off(&mut self.run, &mut retry, tried, e, &table).await?;
                }
            }
        };
        fresh.ok_or_else(|| Error::Topic {
            topic: self.topic.name.clone(),
            message: format!("table {} disappeared during a commit", self.run.summary().table),
        })
    }

    /// Writing the files of a commit failed with `error` and the `records` they held are
    /// gone. If it is transient and the retry budget (kept across such failures until a
    /// commit succeeds) allows, everything uncommitted is dropped, our partitions are sought
    /// back to the table's offsets (reloaded) and the run goes on after a wait: the records
    /// are read again. At the end of a run there is no going on: the error stops it.
    async fn abandon(&mut self, consumer: &GroupConsumer, error: Error, records: u64) -> Result<()> {
        let timeout = self.retry_timeout();
        let (retry, since) = self.storage_retry.get_or_insert_with(|| (CommitRetry::new(timeout), Instant::now()));
        let wait = match retry.next_wait(&error, since.elapsed()) {
            Some(wait) if !self.finishing => wait,
            _ => {
                self.run.record(RunEvent::CommitFailed);
                return Err(error);
            }
        };
        let attempt = retry.failures();
        let table = self.run.summary().table.clone();
        self.run.record(RunEvent::WritesDropped { table: &table, error: &error, records, wait, attempt });
        let fresh = self.reload().await?;
        let stored = stored_offsets(&fresh, &self.topic.name)?;
        self.table.set(fresh);
        self.pending_events.clear();
        self.lost = std::mem::take(&mut self.lost)
            .into_iter()
            .filter_map(|r| r.after(stored.get(&r.partition).copied()))
            .collect();
        for (p, to) in self.ledger.abandon(&stored) {
            // The validator saw the dropped records: it starts again from the committed state.
            self.buffers.remove(&p);
            self.seek(consumer, p, to)?;
        }
        self.reading_again = true;
        tokio::time::sleep(wait).await;
        Ok(())
    }

    fn retry_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.config.commit.retry_timeout_ms)
    }

    /// Moves our read position of `partition` to `to`. A partition no longer ours is left to
    /// its next owner (it starts at the table's offsets); failing on one still ours stops the
    /// run, since reading on from the old position would skip or repeat records.
    fn seek(&self, consumer: &GroupConsumer, partition: i32, to: i64) -> Result<()> {
        let Err(e) = consumer.seek(&self.topic.name, partition, Offset::Offset(to), BROKER_REQUEST_TIMEOUT) else {
            return Ok(());
        };
        let assigned = consumer.assignment().unwrap_or_default();
        if assigned.find_partition(&self.topic.name, partition).is_some() {
            return Err(Error::Kafka {
                context: format!("seeking {} partition {partition} to offset {to}", self.topic.name),
                source: e,
            });
        }
        tracing::info!(partition, error = %e, "not sought (no longer assigned)");
        Ok(())
    }

    /// Commits offsets to the group. The table is the truth, so a failure (e.g. the
    /// partition moved to another member meanwhile) is logged, not fatal.
    fn commit_group(&self, consumer: &GroupConsumer, offsets: &PartitionOffsets) {
        if let Err(e) = commit_offsets(consumer, &self.topic.name, offsets) {
            tracing::warn!(error = %e, "group offset commit failed; the table holds the offsets");
        }
    }
}
