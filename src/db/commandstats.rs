//! `INFO commandstats`, read: how many times Redis has run each command. `webhookd-bench`
//! and the tests count a run's commands with it.

/// Command name (lower case, with its `|subcommand`) -> calls.
pub type Calls = std::collections::BTreeMap<String, u64>;

/// The `cmdstat_<name>:calls=N,...` lines of an `INFO commandstats` reply; other lines are
/// skipped.
pub fn parse(text: &str) -> Calls {
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.trim().strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_string(), calls))
        })
        .collect()
}
