//! What one participant was sent, kept until acknowledged so a reconnect can resume from it.

use std::collections::VecDeque;

use crate::ids::Frame;

/// Sequenced frames addressed to one participant, oldest first, bounded in count and bytes.
#[derive(Debug, Default)]
pub(crate) struct Replay {
    entries: VecDeque<(u64, Frame)>,
    bytes: usize,
    /// Highest `seq` removed (acknowledged or evicted); resuming from below it is a gap.
    removed_through: u64,
}

/// Frames were evicted before the participant acknowledged them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Overflow {
    pub(crate) evicted: usize,
}

impl Replay {
    /// Appends a frame, evicting the oldest ones beyond the bounds.
    pub(crate) fn push(
        &mut self,
        seq: u64,
        frame: Frame,
        max_messages: usize,
        max_bytes: usize,
    ) -> Option<Overflow> {
        self.bytes += frame.len();
        self.entries.push_back((seq, frame));

        let mut evicted = 0;
        while self.entries.len() > max_messages || self.bytes > max_bytes {
            let Some((seq, frame)) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= frame.len();
            self.removed_through = seq;
            evicted += 1;
        }
        (evicted > 0).then_some(Overflow { evicted })
    }

    /// Drops frames up to and including `seq`: the participant has them.
    pub(crate) fn ack(&mut self, seq: u64) {
        while let Some((front, _)) = self.entries.front() {
            if *front > seq {
                break;
            }
            if let Some((removed, frame)) = self.entries.pop_front() {
                self.bytes -= frame.len();
                self.removed_through = removed;
            }
        }
        if self.entries.is_empty() {
            // Idle participants should hold no buffer memory.
            self.entries = VecDeque::new();
        }
    }

    /// The frames after `seq`, or `None` if some of them are gone.
    pub(crate) fn since(&self, seq: u64) -> Option<impl Iterator<Item = &Frame>> {
        if seq < self.removed_through {
            return None;
        }
        Some(
            self.entries
                .iter()
                .filter(move |(s, _)| *s > seq)
                .map(|(_, frame)| frame),
        )
    }

    /// Forgets everything; resuming from before `seq` is then a gap.
    pub(crate) fn reset(&mut self, seq: u64) {
        self.entries = VecDeque::new();
        self.bytes = 0;
        self.removed_through = seq;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: usize) -> Frame {
        Frame::new("x".repeat(n))
    }

    fn seqs(replay: &Replay, after: u64) -> Option<Vec<usize>> {
        replay
            .since(after)
            .map(|frames| frames.map(Frame::len).collect())
    }

    #[test]
    fn resumes_after_any_seq_still_held() {
        let mut replay = Replay::default();
        for (seq, len) in [(2, 1), (3, 2), (5, 3)] {
            assert_eq!(replay.push(seq, frame(len), 10, 100), None);
        }
        assert_eq!(seqs(&replay, 0), Some(vec![1, 2, 3]));
        assert_eq!(seqs(&replay, 3), Some(vec![3]));
        assert_eq!(seqs(&replay, 5), Some(vec![]));

        replay.ack(3);
        assert_eq!(seqs(&replay, 3), Some(vec![3]));
        assert_eq!(seqs(&replay, 4), Some(vec![3]));
        assert_eq!(seqs(&replay, 2), None, "seq 3 was acknowledged and dropped");
    }

    #[test]
    fn eviction_by_count_or_bytes_makes_a_gap() {
        let mut replay = Replay::default();
        replay.push(1, frame(10), 2, 25);
        replay.push(2, frame(10), 2, 25);
        assert_eq!(
            replay.push(3, frame(10), 2, 25),
            Some(Overflow { evicted: 1 })
        );
        assert_eq!(seqs(&replay, 0), None);
        assert_eq!(seqs(&replay, 1), Some(vec![10, 10]));
        assert_eq!(
            replay.push(4, frame(20), 2, 25),
            Some(Overflow { evicted: 2 })
        );
        assert_eq!(seqs(&replay, 3), Some(vec![20]));
        assert_eq!(replay.bytes, 20);
    }

    #[test]
    fn ack_of_everything_frees_the_buffer() {
        let mut replay = Replay::default();
        for seq in 1..=50 {
            replay.push(seq, frame(8), 100, 10_000);
        }
        replay.ack(50);
        assert_eq!(replay.entries.capacity(), 0);
        assert_eq!(replay.bytes, 0);
    }
}
