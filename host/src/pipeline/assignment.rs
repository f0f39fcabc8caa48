//! Waiting for a bounded run's first assignment: a busy group is waited out, a missing topic is an error at once.
//!
//! After kill -9, the dead members stay in the group until their sessions expire
//! (`session.timeout.ms`, librdkafka's default 45 s each) and the group rebalances: a restart
//! gets no partition until then. That is a wait, not a failure, and the operator should see
//! what it is waiting for; a topic that does not exist is told apart at once.

use std::time::{Duration, Instant};

use crate::config::KafkaConfig;
use crate::error::{Error, Result};
use crate::kafka::group::GroupView;

use super::run_events::{RunEvent, RunEvents};

/// How often a waiting run asks the coordinator about the group.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// The longest a bounded run waits for its first partition, counted from the idle timeout,
/// while the group is busy: well past the broker's largest session timeout by default
/// (`group.max.session.timeout.ms`, 30 min) would hang scripts, so past this it gives up,
/// naming what the group was doing.
const BUSY_WAIT_LIMIT: Duration = Duration::from_secs(600);

/// How long a bounded run waits beyond the idle timeout when the group looks settled (stable
/// or empty, no member but us) and still assigns nothing: a rebalance in flight.
pub(super) const SETTLED_GRACE: Duration = Duration::from_secs(60);

/// Asks the coordinator, now and then, why a bounded run has no partition yet.
pub(super) struct AssignmentWait<'a> {
    kafka: &'a KafkaConfig,
    topic: &'a str,
    view: Option<GroupView>,
    last_probe: Option<Instant>,
}

impl<'a> AssignmentWait<'a> {
    pub(super) fn new(kafka: &'a KafkaConfig, topic: &'a str) -> Self {
        Self { kafka, topic, view: None, last_probe: None }
    }

    /// Called on quiet polls `past_timeout` after the idle timeout with nothing assigned:
    /// records what the run waits for, or fails when waiting is pointless.
    pub(super) fn check(&mut self, past_timeout: Duration, run: &mut RunEvents) -> Result<()> {
        if self.last_probe.is_some_and(|t| t.elapsed() < PROBE_INTERVAL) {
            return Ok(());
        }
        self.last_probe = Some(Instant::now());
        let view = match &self.view {
            Some(v) => v,
            None => self.view.insert(GroupView::open(self.kafka)?),
        };
        let (state, members) = view.state()?;
        // Only an unknown topic counts as missing; a listing that fails otherwise still has some.
        let partitions = match view.topic_missing(self.topic)? {
            true => 0,
            false => view.partitions(self.topic)?.len().max(1),
        };
        let seen = GroupSeen { partitions, state, members };
        let group = &self.kafka.group_id;
        match judge(&seen, past_timeout, self.topic, group) {
            Verdict::Wait => {
                run.record(RunEvent::WaitingFor(&seen.describe(group)));
                Ok(())
            }
            Verdict::Fail(message) => Err(Error::Topic { topic: self.topic.to_string(), message }),
        }
    }
}

/// What the coordinator says while no partition is assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct GroupSeen {
    /// Partitions of the topic; 0 when it does not exist.
    pub partitions: usize,
    /// `Stable`, `PreparingRebalance`, `CompletingRebalance`, `Empty`, `Dead`.
    pub state: String,
    /// Members, this instance and dead ones whose sessions have not expired included.
    pub members: usize,
}

impl GroupSeen {
    fn busy(&self) -> bool {
        self.members > 1 || self.state.ends_with("Rebalance")
    }

    /// For the progress line and logs.
    pub(super) fn describe(&self, group: &str) -> String {
        let why = match self.busy() {
            true => {
                "; members of an earlier run keep their partitions until their sessions expire (session.timeout.ms)"
            }
            false => "",
        };
        format!("group {group} to assign partitions ({}, {} member(s){why})", self.state, self.members)
    }
}

/// What to do after `waited` (since the idle timeout) without an assignment.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Wait,
    Fail(String),
}

/// Judges a wait of `waited` past the idle timeout, given what the group looks like now.
pub(super) fn judge(seen: &GroupSeen, waited: Duration, topic: &str, group: &str) -> Verdict {
    let secs = waited.as_secs();
    if seen.partitions == 0 {
        return Verdict::Fail(format!(
            "topic {topic} does not exist (the broker lists no partition of it); check the name in the config, \
             or create it: k2-ingest does not create source topics"
        ));
    }
    if seen.busy() && waited < BUSY_WAIT_LIMIT {
        return Verdict::Wait;
    }
    if !seen.busy() && waited < SETTLED_GRACE {
        return Verdict::Wait;
    }
    let hint = match seen.busy() {
        true => "other live members may hold every partition (more members than partitions?)",
        false => "the coordinator never completed a rebalance for this member",
    };
    Verdict::Fail(format!(
        "no partition of topic {topic} ({} partition(s)) was assigned to group {group} for {secs} s past the idle \
         timeout; the group is {} with {} member(s): {hint}",
        seen.partitions, seen.state, seen.members
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(partitions: usize, state: &str, members: usize) -> GroupSeen {
        GroupSeen { partitions, state: state.into(), members }
    }

    #[test]
    fn a_missing_topic_fails_at_once_naming_it() {
        let Verdict::Fail(why) = judge(&seen(0, "Stable", 1), Duration::ZERO, "t", "g") else { panic!() };
        assert!(why.contains("topic t does not exist"), "{why}");
    }

    #[test]
    fn dead_members_and_rebalances_are_waited_out() {
        let waited = Duration::from_secs(120);
        assert_eq!(judge(&seen(4, "PreparingRebalance", 1), waited, "t", "g"), Verdict::Wait);
        assert_eq!(
            judge(&seen(4, "Stable", 9), waited, "t", "g"),
            Verdict::Wait,
            "dead members until their sessions end"
        );
        let Verdict::Fail(why) = judge(&seen(4, "Stable", 9), BUSY_WAIT_LIMIT, "t", "g") else { panic!() };
        assert!(why.contains("Stable with 9 member(s)") && why.contains("more members than partitions"), "{why}");
    }

    #[test]
    fn a_settled_group_gets_a_grace_then_fails_saying_what_it_saw() {
        assert_eq!(judge(&seen(4, "Stable", 1), Duration::from_secs(5), "t", "g"), Verdict::Wait);
        let Verdict::Fail(why) = judge(&seen(4, "Stable", 1), SETTLED_GRACE, "t", "g") else { panic!() };
        assert!(why.contains("no partition of topic t (4 partition(s)) was assigned to group g"), "{why}");
    }
}
