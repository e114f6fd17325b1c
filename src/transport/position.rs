//! Where a connection stands in one channel, and the judgements that keep
//! resume exact: is a live message the next one, a duplicate, or a sign of a
//! gap; can a history read continue this position, or must the client be
//! told of a `reset`. Pure and synchronous: [`super::subscription`] does the
//! reading and the queueing around it.

use crate::hub::History;
use crate::message::{Epoch, Message, ResetReason};

/// A position in a channel: everything up to `seq` in `epoch`. The epoch is
/// unknown only until the first read of a channel resumed from a cursor entry
/// without one ("whatever the current epoch is").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelPosition {
    pub epoch: Option<Epoch>,
    pub seq: u64,
}

/// What to do with a live message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Live {
    /// The next in line: deliver it.
    Queue,
    /// Already delivered (or older): drop it.
    Duplicate,
    /// After a gap, or from another epoch: read history before going on.
    Behind,
}

/// What a history read made after this position means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The history continues this position.
    Continues,
    /// The position cannot be continued: the client is moved to `to` (the
    /// oldest retained seq minus one) with a `reset`. `reread` when the read
    /// was made from a position that does not lead to `to`, so it must be
    /// made again from `to`.
    Reset { reason: ResetReason, to: u64, reread: bool },
}

impl ChannelPosition {
    pub fn new(epoch: Option<Epoch>, seq: u64) -> ChannelPosition {
        ChannelPosition { epoch, seq }
    }

    /// Moves to `seq` in `epoch` (the epoch is cloned only when it changes).
    pub fn advance(&mut self, epoch: &Epoch, seq: u64) {
        if self.epoch.as_ref() != Some(epoch) {
            self.epoch = Some(epoch.clone());
        }
        self.seq = seq;
    }

    pub fn on_live(&self, message: &Message) -> Live {
        if self.epoch.as_ref() != Some(&message.epoch) {
            return Live::Behind;
        }
        if message.seq <= self.seq {
            Live::Duplicate
        } else if message.seq == self.seq + 1 {
            Live::Queue
        } else {
            Live::Behind
        }
    }

    /// Judges a history read of this channel made after this position. When
    /// it continues, the position is in the history's epoch from then on.
    pub fn on_history(&self, history: &History) -> Verdict {
        let to = history.oldest.saturating_sub(1);
        // Another epoch, whatever the seq (0 included): what the old epoch held
        // after this position cannot be known, so the client is told.
        let epoch_differs = self.epoch.as_ref().is_some_and(|e| *e != history.epoch);
        let reason = if epoch_differs || self.seq > history.head {
            ResetReason::EpochChanged
        } else if self.seq.saturating_add(1) < history.oldest {
            ResetReason::HistoryTrimmed
        } else {
            return Verdict::Continues;
        };
        let reread = reason == ResetReason::EpochChanged && self.seq != to;
        Verdict::Reset { reason, to, reread }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::value::RawValue;

    use super::*;

    fn epoch(s: &str) -> Epoch {
        s.parse().unwrap()
    }

    fn message(e: &str, seq: u64) -> Arc<Message> {
        let data = RawValue::from_string("1".into()).unwrap();
        Arc::new(Message::new("c".parse().unwrap(), seq, 0, epoch(e), &data))
    }

    fn history(e: &str, head: u64, oldest: u64) -> History {
        History { epoch: epoch(e), head, oldest, messages: Vec::new() }
    }

    fn at(e: Option<&str>, seq: u64) -> ChannelPosition {
        ChannelPosition::new(e.map(epoch), seq)
    }

    #[test]
    fn live_messages() {
        let table = [
            ("in order", at(Some("a"), 4), ("a", 5), Live::Queue),
            ("duplicate", at(Some("a"), 4), ("a", 4), Live::Duplicate),
            ("older", at(Some("a"), 4), ("a", 1), Live::Duplicate),
            ("gap", at(Some("a"), 4), ("a", 6), Live::Behind),
            ("other epoch", at(Some("a"), 4), ("b", 5), Live::Behind),
            ("epoch unknown yet", at(None, 4), ("a", 5), Live::Behind),
            ("from zero", at(Some("a"), 0), ("a", 1), Live::Queue),
            ("at u64::MAX", at(Some("a"), u64::MAX), ("a", u64::MAX), Live::Duplicate),
        ];
        for (case, position, (e, seq), expected) in table {
            assert_eq!(position.on_live(&message(e, seq)), expected, "{case}");
        }
    }

    #[test]
    fn history_reads() {
        use ResetReason::{EpochChanged, HistoryTrimmed};
        let reset = |reason, to, reread| Verdict::Reset { reason, to, reread };
        let table = [
            ("continues", at(Some("a"), 4), history("a", 9, 1), Verdict::Continues),
            ("at the head", at(Some("a"), 9), history("a", 9, 1), Verdict::Continues),
            ("just before the oldest", at(Some("a"), 4), history("a", 9, 5), Verdict::Continues),
            ("nothing retained, caught up", at(Some("a"), 9), history("a", 9, 10), Verdict::Continues),
            ("unknown epoch continues", at(None, 4), history("a", 9, 1), Verdict::Continues),
            ("trimmed", at(Some("a"), 2), history("a", 9, 5), reset(HistoryTrimmed, 4, false)),
            ("trimmed, nothing retained", at(Some("a"), 2), history("a", 9, 10), reset(HistoryTrimmed, 9, false)),
            ("epoch changed", at(Some("a"), 4), history("b", 9, 1), reset(EpochChanged, 0, true)),
            ("at 0, a new epoch from seq 1", at(Some("a"), 0), history("b", 9, 1), reset(EpochChanged, 0, false)),
            ("at 0, a new epoch never published", at(Some("a"), 0), history("b", 0, 1), reset(EpochChanged, 0, false)),
            ("at 0, the same epoch", at(Some("a"), 0), history("a", 9, 1), Verdict::Continues),
            ("at 0, a new epoch already trimmed", at(Some("a"), 0), history("b", 9, 3), reset(EpochChanged, 2, true)),
            ("ahead of the head", at(Some("a"), 12), history("a", 9, 1), reset(EpochChanged, 0, true)),
            ("ahead, unknown epoch", at(None, 12), history("a", 9, 3), reset(EpochChanged, 2, true)),
            ("at u64::MAX", at(Some("a"), u64::MAX), history("a", 9, 1), reset(EpochChanged, 0, true)),
            ("oldest = 0 (broken store), at 0", at(Some("a"), 0), history("b", 0, 0), reset(EpochChanged, 0, false)),
            ("oldest = 0 (broken store), ahead", at(Some("a"), 3), history("b", 0, 0), reset(EpochChanged, 0, true)),
        ];
        for (case, position, history, expected) in table {
            assert_eq!(position.on_history(&history), expected, "{case}");
        }
    }
}
