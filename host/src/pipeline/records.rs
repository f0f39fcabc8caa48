//! The path of one record: decoded into its partition's buffer, validated with its batch, routed, and written or set aside.

use rdkafka::Message;
use rdkafka::message::BorrowedMessage;

use crate::decode::columns::KafkaMeta;
use crate::error::{Error, Result};
use crate::failpoint;
use crate::kafka::dlq::{CODE_UNDECODABLE, DeadLetter, DeadLetters};
use crate::sandbox::{SupervisedValidator, Verdict};
use crate::sink::state::read_state;
use crate::sink::writer::TableWriter;

use super::Pipeline;
use super::buffer::{PartitionBuffer, Record};
use super::now_micros;
use super::route::{Undecodable, keep_only, route_undecodable, route_verdict};
use super::run_events::{RunEvent, RunEvents};

impl Pipeline<'_> {
    /// Decodes one message into its partition's buffer; hands the batch on when full.
    pub(super) async fn accept_message(&mut self, msg: &BorrowedMessage<'_>) -> Result<()> {
        self.run.record(RunEvent::Consumed);
        let partition = msg.partition();
        let meta = KafkaMeta { partition, offset: msg.offset(), timestamp_ms: msg.timestamp().to_millis() };
        if !self.buffers.contains_key(&partition) {
            let buffer = self.new_buffer(partition).await?;
            self.buffers.insert(partition, buffer);
        }
        self.ledger.read(partition, meta.offset);
        let buffer = self.buffers.get_mut(&partition).expect("inserted above");
        match self.decoder.decode_into(msg.payload().unwrap_or_default(), buffer.columns(), meta) {
            Ok(()) => {
                let headers = self.dead_letters.as_ref().and_then(|_| msg.headers().map(|h| h.detach()));
                let (key, body) = (msg.key(), msg.payload());
                buffer.push(Record { offset: meta.offset, timestamp_ms: meta.timestamp_ms, key, body, headers });
                if buffer.len() >= self.config.pipeline.batch_records {
                    self.process_batch(partition).await?;
                }
            }
            Err(e) => {
                let error = e.to_string();
                let route = route_undecodable(self.topic, partition, meta.offset, &error);
                let set_aside = route.is_ok();
                self.run.record(RunEvent::Undecodable { partition, offset: meta.offset, error: &error, set_aside });
                if route? == Undecodable::DeadLetter {
                    let headers = msg.headers().map(|h| h.detach());
                    let letter = DeadLetter {
                        partition,
                        offset: meta.offset,
                        timestamp_ms: meta.timestamp_ms,
                        key: msg.key(),
                        payload: msg.payload(),
                        headers: headers.as_ref(),
                        code: CODE_UNDECODABLE,
                        message: &error,
                    };
                    send_letter(&self.topic.name, self.dead_letters.as_mut(), &mut self.run, letter).await?;
                }
                if buffer.is_empty() {
                    // Nothing buffered ahead of it: its offset is done.
                    self.ledger.handed(partition);
                }
            }
        }
        Ok(())
    }

    /// A buffer for a partition met for the first time (or again), with its validator
    /// restored from this instance's uncommitted state or the table's.
    async fn new_buffer(&mut self, partition: i32) -> Result<PartitionBuffer> {
        let validator = match (&self.module, &self.topic.validator) {
            (Some(module), Some(cfg)) => {
                let (state, from) = match self.ledger.revoked_state(partition) {
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
        Ok(PartitionBuffer::new(partition, self.table.columns()?, validator, self.dead_letters.is_some()))
    }

    /// The validator state committed with the table's latest snapshot for `partition`: a
    /// fresh load, as the partition may come from another instance that committed since.
    async fn committed_state(&self, partition: i32) -> Result<Option<Vec<u8>>> {
        let Some(table) = self.table.reload().await? else { return Ok(None) };
        read_state(&table, &self.topic.name, partition).await
    }

    /// Hands every partition's partial batch on.
    pub(super) async fn flush_partitions(&mut self) -> Result<()> {
        let partitions: Vec<i32> = self.buffers.keys().copied().collect();
        for p in partitions {
            self.process_batch(p).await?;
        }
        Ok(())
    }

    /// Validates one partition's batch, routes what the verdict sets aside, and appends the
    /// accepted records to the writer.
    async fn process_batch(&mut self, partition: i32) -> Result<()> {
        let Some(buffer) = self.buffers.get_mut(&partition) else { return Ok(()) };
        if buffer.is_empty() {
            self.ledger.handed_nothing(partition);
            return Ok(());
        }
        let records = buffer.finish_columns()?;
        self.run.record(RunEvent::Batch { rows: records.num_rows() });
        let verdict = match buffer.validate(&self.topic.name, &records, self.table.field_columns(), now_micros()).await
        {
            Some(call) => {
                self.run.record(RunEvent::ValidatorCalled { took: call.took, recovery: call.recovery });
                call.verdict.map_err(|e| Error::Topic {
                    topic: self.topic.name.clone(),
                    message: format!("validator failed; stopping the topic without committing its offsets: {e}"),
                })?
            }
            None => Verdict::default(),
        };
        let routing = route_verdict(self.topic, partition, buffer.offsets(), &verdict, now_micros())?;
        for s in routing.letters.iter().map(|&i| &routing.set_aside[i]) {
            let letter = buffer.letter(s.index, &s.code, &s.message);
            send_letter(&self.topic.name, self.dead_letters.as_mut(), &mut self.run, letter).await?;
        }
        self.run.record(RunEvent::DuplicatesSetAside(routing.duplicates));
        self.run.record(RunEvent::Verdict { partition, first_offset: buffer.offsets()[0], verdict: &verdict });
        if self.events.is_some() {
            for row in routing.events {
                self.run.record(RunEvent::SequenceEvent(&row));
                self.pending_events.push(row);
            }
        }
        buffer.clear();
        let accepted = keep_only(records, routing.set_aside.iter().map(|s| s.index))?;
        if accepted.num_rows() > 0 {
            if self.writer.is_none() {
                let opened =
                    TableWriter::open_with_schema(self.table.table(), self.table.columns_schema(), &self.config.sink);
                self.writer = Some(opened.await.inspect_err(|_| self.run.record(RunEvent::WriteFailed))?);
            }
            self.run.record(RunEvent::Written(accepted.num_rows() as u64));
            let written = self.writer.as_mut().expect("opened above").write(accepted).await;
            written.inspect_err(|_| self.run.record(RunEvent::WriteFailed))?;
            failpoint::hit("after-batch");
        }
        self.ledger.handed(partition);
        Ok(())
    }
}

/// The one route to the dead-letter topic: every letter sent is counted there.
async fn send_letter(
    topic: &str,
    dead_letters: Option<&mut DeadLetters>,
    run: &mut RunEvents,
    letter: DeadLetter<'_>,
) -> Result<()> {
    // The router only sends letters where the config opened a dead-letter topic.
    let Some(dl) = dead_letters else {
        return Err(Error::Topic {
            topic: topic.to_string(),
            message: format!(
                "partition {} offset {}: a dead letter with no dead-letter topic open",
                letter.partition, letter.offset
            ),
        });
    };
    let code = letter.code;
    dl.send(letter).await?;
    run.record(RunEvent::DeadLettered { code });
    Ok(())
}
