//! A linearizability checker for one register with compare-and-swap (the
//! Wing–Gong algorithm with Lowe's memoization, as Porcupine and Knossos
//! implement it).
//!
//! A history is a list of [`Op`]s, each with the logical time it was
//! invoked and, when its outcome is known, the time it returned. The
//! checker searches for an order of the operations that respects real time
//! (an operation that returned before another was invoked comes first), in
//! which every read returns the value the register holds and every write
//! finds the value it built on. A write whose outcome is unknown (it failed
//! ambiguously, or its caller was cancelled) may take effect at any point
//! after its invocation, or never; with a [`deadline`](Op::deadline), only
//! before it.

use std::collections::HashSet;
use std::fmt;

/// A register value: an opaque id (e.g. the root's atom pointer), `None`
/// for "no root".
pub type Value = Option<u64>;

/// What an operation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// Read `value`.
    Read {
        /// The value returned.
        value: Value,
    },
    /// Replaced `from` with `to` (a compare-and-swap).
    Write {
        /// The value it built on.
        from: Value,
        /// The value it wrote.
        to: Value,
    },
    /// Wrote `to`, whatever the register held (a blind write).
    Set {
        /// The value it wrote.
        to: Value,
    },
}

/// One operation of a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// Who did it (diagnostics).
    pub client: String,
    /// What it did.
    pub kind: OpKind,
    /// Logical time of the call.
    pub invoked: u64,
    /// Logical time of the return; `None` when the outcome is unknown (only
    /// writes).
    pub returned: Option<u64>,
    /// For an unknown outcome: the time before which the write took effect
    /// if it ever did (say, when its client's next write returned: a
    /// process's later write never precedes its earlier one). `None`: any
    /// time, or never.
    pub deadline: Option<u64>,
}

/// Why a history is not linearizable: the longest prefix of operations
/// that could be ordered, for diagnostics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotLinearizable {
    /// The operations of the longest order found, in that order.
    pub longest: Vec<Op>,
    /// Operations with a known outcome that could not be placed after it.
    pub stuck: Vec<Op>,
}

impl fmt::Display for NotLinearizable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "history is not linearizable; longest linearization:")?;
        for op in &self.longest {
            writeln!(f, "  {op:?}")?;
        }
        writeln!(f, "then none of these fits:")?;
        for op in &self.stuck {
            writeln!(f, "  {op:?}")?;
        }
        Ok(())
    }
}

fn apply(kind: OpKind, state: Value) -> Option<Value> {
    match kind {
        OpKind::Read { value } => (value == state).then_some(state),
        OpKind::Write { from, to } => (from == state).then_some(to),
        OpKind::Set { to } => Some(to),
    }
}

#[derive(Clone, Copy)]
enum Event {
    Call(usize),
    Return(usize),
}

/// Checks `history` against a register that starts at `initial`.
pub fn check(initial: Value, history: &[Op]) -> Result<(), NotLinearizable> {
    // A write of unknown outcome whose value nobody read or built on can
    // be left out: had it taken effect, only a blind write could follow it
    // (a read or compare-and-swap would have observed its value), so an
    // order without it exists whenever one with it does. Without them the
    // search does not branch on each (many failed writes made it
    // exponential).
    let observed: HashSet<Value> = history
        .iter()
        .filter_map(|o| match o.kind {
            OpKind::Read { value } => Some(value),
            OpKind::Write { from, .. } => Some(from),
            OpKind::Set { .. } => None,
        })
        .collect();
    let history: Vec<Op> = history
        .iter()
        .filter(|o| {
            let to = match o.kind {
                OpKind::Read { .. } => return true,
                OpKind::Write { to, .. } | OpKind::Set { to } => to,
            };
            o.returned.is_some() || observed.contains(&to)
        })
        .cloned()
        .collect();
    let history = &history[..];
    let n = history.len();
    // Events in time order; unknown outcomes have no return event.
    let mut events: Vec<(u64, u8, Event)> = Vec::with_capacity(2 * n);
    for (i, op) in history.iter().enumerate() {
        events.push((op.invoked, 0, Event::Call(i)));
        if let Some(r) = op.returned.or(op.deadline) {
            events.push((r, 1, Event::Return(i)));
        }
    }
    events.sort_by_key(|(t, order, _)| (*t, *order));
    // A doubly linked list over the events (index m is the end sentinel).
    let m = events.len();
    let mut next: Vec<usize> = (1..=m).collect();
    let mut prev: Vec<usize> = (0..m).map(|i| i.wrapping_sub(1)).collect();
    let mut head = if m == 0 { m } else { 0 };
    let mut call_of = vec![usize::MAX; n];
    let mut ret_of = vec![usize::MAX; n];
    for (pos, (_, _, e)) in events.iter().enumerate() {
        match e {
            Event::Call(i) => call_of[*i] = pos,
            Event::Return(i) => ret_of[*i] = pos,
        }
    }
    let known = history.iter().filter(|o| o.returned.is_some()).count();
    let words = n.div_ceil(64).max(1);
    let mut linearized = vec![0u64; words];
    let mut done_known = 0usize;
    let mut state = initial;
    let mut cache: HashSet<(Vec<u64>, Value)> = HashSet::new();
    // (op, state before)
    let mut stack: Vec<(usize, Value)> = Vec::new();
    let mut best: Vec<usize> = Vec::new();

    let unlink = |pos: usize, head: &mut usize, next: &mut Vec<usize>, prev: &mut Vec<usize>| {
        let (p, q) = (prev[pos], next[pos]);
        if p == usize::MAX {
            *head = q;
        } else {
            next[p] = q;
        }
        if q < m {
            prev[q] = p;
        }
    };
    let relink = |pos: usize, head: &mut usize, next: &mut Vec<usize>, prev: &mut Vec<usize>| {
        let (p, q) = (prev[pos], next[pos]);
        if p == usize::MAX {
            *head = pos;
        } else {
            next[p] = pos;
        }
        if q < m {
            prev[q] = pos;
        }
    };

    let mut cur = head;
    loop {
        if done_known == known {
            return Ok(());
        }
        if cur < m
            && let Event::Call(i) = events[cur].2
        {
            let mut after = linearized.clone();
            after[i / 64] |= 1 << (i % 64);
            if let Some(next_state) = apply(history[i].kind, state)
                && cache.insert((after.clone(), next_state))
            {
                stack.push((i, state));
                state = next_state;
                linearized = after;
                if history[i].returned.is_some() {
                    done_known += 1;
                }
                unlink(call_of[i], &mut head, &mut next, &mut prev);
                if ret_of[i] != usize::MAX {
                    unlink(ret_of[i], &mut head, &mut next, &mut prev);
                }
                if stack.len() > best.len() {
                    best = stack.iter().map(|(o, _)| *o).collect();
                }
                cur = head;
                continue;
            }
            cur = next[cur];
            continue;
        }
        // The deadline of a write whose outcome is unknown, not linearized
        // yet: it never took effect (the alternatives, taking effect
        // earlier, are searched from its call on).
        if cur < m
            && let Event::Return(i) = events[cur].2
            && history[i].returned.is_none()
        {
            let mut after = linearized.clone();
            after[i / 64] |= 1 << (i % 64);
            if cache.insert((after.clone(), state)) {
                stack.push((i, state));
                linearized = after;
                unlink(call_of[i], &mut head, &mut next, &mut prev);
                unlink(ret_of[i], &mut head, &mut next, &mut prev);
                cur = head;
                continue;
            }
        }
        // A return whose call is not linearized yet, or the end: backtrack.
        let Some((i, before)) = stack.pop() else {
            let stuck = (0..n)
                .filter(|j| history[*j].returned.is_some() && !best.contains(j))
                .map(|j| history[j].clone())
                .collect();
            return Err(NotLinearizable {
                longest: best.iter().map(|j| history[*j].clone()).collect(),
                stuck,
            });
        };
        if ret_of[i] != usize::MAX {
            relink(ret_of[i], &mut head, &mut next, &mut prev);
        }
        relink(call_of[i], &mut head, &mut next, &mut prev);
        linearized[i / 64] &= !(1 << (i % 64));
        if history[i].returned.is_some() {
            done_known -= 1;
        }
        state = before;
        cur = next[call_of[i]];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(from: Value, to: Value, invoked: u64, returned: Option<u64>) -> Op {
        Op {
            client: "c".into(),
            kind: OpKind::Write { from, to },
            invoked,
            returned,
            deadline: None,
        }
    }

    fn set(to: Value, invoked: u64, returned: Option<u64>, deadline: Option<u64>) -> Op {
        Op {
            client: "c".into(),
            kind: OpKind::Set { to },
            invoked,
            returned,
            deadline,
        }
    }

    fn r(value: Value, invoked: u64, returned: u64) -> Op {
        Op {
            client: "c".into(),
            kind: OpKind::Read { value },
            invoked,
            returned: Some(returned),
            deadline: None,
        }
    }

    #[test]
    fn sequential_histories() {
        assert!(check(None, &[]).is_ok());
        let ok = [
            w(None, Some(1), 1, Some(2)),
            r(Some(1), 3, 4),
            w(Some(1), Some(2), 5, Some(6)),
        ];
        assert!(check(None, &ok).is_ok());
        // A read of a value that was replaced before it began.
        let stale = [
            w(None, Some(1), 1, Some(2)),
            w(Some(1), Some(2), 3, Some(4)),
            r(Some(1), 5, 6),
        ];
        assert!(check(None, &stale).is_err());
        // A write building on a value the register never held.
        assert!(check(None, &[w(Some(9), Some(1), 1, Some(2))]).is_err());
    }

    #[test]
    fn concurrent_operations_may_take_either_order() {
        // Two overlapping writes from the same base: only one can succeed.
        let both = [w(None, Some(1), 1, Some(4)), w(None, Some(2), 2, Some(3))];
        assert!(check(None, &both).is_err());
        // Overlapping write and read: the read may see either value.
        for seen in [None, Some(1)] {
            let h = [w(None, Some(1), 1, Some(4)), r(seen, 2, 3)];
            assert!(check(None, &h).is_ok(), "read of {seen:?}");
        }
    }

    #[test]
    fn unknown_outcomes_may_or_may_not_take_effect() {
        // The write was cancelled: a later read may see it or not.
        for seen in [None, Some(1)] {
            let h = [w(None, Some(1), 1, None), r(seen, 5, 6)];
            assert!(check(None, &h).is_ok());
        }
        // But not after a later acknowledged write built on the old value
        // and a read saw that one... and then the lost one again.
        let h = [
            w(None, Some(1), 1, None),
            w(None, Some(2), 3, Some(4)),
            r(Some(2), 5, 6),
            r(Some(1), 7, 8),
        ];
        assert!(check(None, &h).is_err());
        // An acknowledged write that a later read does not see: lost.
        let lost = [w(None, Some(1), 1, Some(2)), r(None, 3, 4)];
        let err = check(None, &lost).unwrap_err();
        assert_eq!(err.stuck.len(), 1, "{err}");
    }

    #[test]
    fn blind_writes_replace_whatever_is_there() {
        let h = [
            w(None, Some(1), 1, Some(2)),
            set(Some(2), 3, Some(4), None),
            r(Some(2), 5, 6),
            w(Some(2), Some(3), 7, Some(8)),
        ];
        assert!(check(None, &h).is_ok());
        // A blind write acknowledged before a read began is seen by it.
        let h = [set(Some(2), 1, Some(2), None), r(None, 3, 4)];
        assert!(check(None, &h).is_err());
    }

    #[test]
    fn an_unknown_write_with_a_deadline_takes_effect_before_it_or_never() {
        // Without a deadline, a lost blind write may land any time later:
        // after a later acknowledged write of the same client, even.
        let late = |deadline| {
            [
                set(Some(1), 1, None, deadline),
                set(Some(2), 3, Some(4), None),
                r(Some(2), 5, 6),
                r(Some(1), 7, 8),
            ]
        };
        assert!(check(None, &late(None)).is_ok());
        // With its deadline at the later write's return: not after it.
        assert!(check(None, &late(Some(4))).is_err());
        // Before its deadline it may have landed, or never.
        for seen in [None, Some(1)] {
            let h = [set(Some(1), 1, None, Some(6)), r(seen, 3, 4)];
            assert!(check(None, &h).is_ok(), "read of {seen:?}");
        }
        let h = [set(Some(1), 1, None, Some(2)), r(None, 3, 4)];
        assert!(check(None, &h).is_ok(), "never");
        let after = |deadline| {
            [
                set(Some(1), 1, None, deadline),
                r(None, 5, 6),
                r(Some(1), 7, 8),
            ]
        };
        assert!(check(None, &after(None)).is_ok());
        assert!(check(None, &after(Some(4))).is_err(), "after its deadline");
    }

    #[test]
    fn unobserved_failed_writes_do_not_change_the_answer() {
        // Many failed blind writes nobody saw, around a lost acknowledged
        // write: still caught, and quickly.
        let mut h: Vec<Op> = (0..40)
            .map(|i| set(Some(100 + i), 1 + i, None, Some(200)))
            .collect();
        h.push(w(None, Some(1), 50, Some(51)));
        h.push(set(Some(7), 250, Some(251), None));
        h.push(r(None, 300, 301));
        assert!(check(None, &h).is_err());
        // A failed write that was seen explains a read before its
        // deadline, not one after a later acknowledged write.
        h.pop();
        h.push(r(Some(120), 300, 301));
        assert!(check(None, &h).is_err(), "seen after its deadline");
        h.pop();
        h.push(r(Some(120), 150, 151));
        assert!(check(None, &h).is_ok());
    }
}
