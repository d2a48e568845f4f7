//! Keeping each endpoint's attempt list at `KEEP` records without an `LTRIM`
//! beside every `LPUSH`.
//!
//! Most pushes leave a list under the cap: a new or quiet endpoint's, and every one of a
//! fan-out to thousands of endpoints, where the `LTRIM` was a fifth of the attempt log's
//! commands. `LPUSH` answers the list's new length, so a list is trimmed in the writer's next
//! pipeline only when that answer said it outgrew the cap. A list then holds at most the cap
//! plus what one write per replica pushed to it (at most `KEEP` each; after a write that
//! failed, until the endpoint's next push says how long it is), and readers take the newest
//! `KEEP` only (`attempt_log::recent`).

use redis::{Pipeline, Value};

use crate::db::keys::Keys;

/// Attempts kept per endpoint.
pub(crate) const KEEP: isize = 100;

/// The endpoints whose lists the last write left over the cap: at most one batch's.
#[derive(Default)]
pub(crate) struct Trims {
    overdue: Vec<String>,
}

impl Trims {
    pub(crate) fn is_empty(&self) -> bool {
        self.overdue.is_empty()
    }

    /// An `LTRIM` for each list the last write left over the cap. Placed after this write's
    /// pushes, it also trims what they add to the same list.
    pub(crate) fn add(&self, pipe: &mut Pipeline, keys: &Keys) {
        for endpoint in &self.overdue {
            pipe.ltrim(keys.attempts(endpoint), 0, KEEP - 1);
        }
    }

    /// After a write landed: `lengths` are the `LPUSH` answers for `pushed`, in order. Only
    /// then, so the trims of a write that failed are sent again.
    pub(crate) fn landed(&mut self, pushed: &[&str], lengths: &[Value]) {
        self.overdue = pushed
            .iter()
            .zip(lengths)
            .filter(|(_, len)| match len {
                Value::Int(n) => *n > KEEP as i64,
                // Not a length (an error in its place): trim to be sure.
                _ => true,
            })
            .map(|(endpoint, _)| endpoint.to_string())
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commands(pipe: &Pipeline) -> Vec<String> {
        pipe.cmd_iter()
            .map(|c| {
                c.args_iter()
                    .map(|a| match a {
                        redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
                        _ => "<cursor>".into(),
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    #[test]
    fn only_a_list_an_lpush_found_over_the_cap_is_trimmed_and_only_once_it_landed() {
        let keys = Keys::new("t:", "events");
        let mut trims = Trims::default();
        let mut pipe = redis::pipe();
        trims.add(&mut pipe, &keys);
        assert!(commands(&pipe).is_empty(), "nothing is known to be long");

        let over = Value::Int(KEEP as i64 + 3);
        trims.landed(
            &["short", "long", "odd"],
            &[Value::Int(KEEP as i64), over, Value::Nil],
        );
        let mut pipe = redis::pipe();
        trims.add(&mut pipe, &keys);
        assert_eq!(
            commands(&pipe),
            [
                format!("LTRIM {} 0 {}", keys.attempts("long"), KEEP - 1),
                format!("LTRIM {} 0 {}", keys.attempts("odd"), KEEP - 1),
            ],
            "a list at the cap is left alone"
        );

        trims.landed(&["long"], &[Value::Int(1)]);
        assert!(trims.is_empty(), "a write that landed replaces the set");
    }
}
