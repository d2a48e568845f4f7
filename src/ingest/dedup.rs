//! The duplicate check (SPEC 1): an event id is delivered once per tenant within
//! `stream.dedup_window` (24 h by default), however many entries carry it. The first entry to
//! carry it owns it; that same entry read again (after a crash or a claim) is still its owner,
//! so it is not taken for a duplicate.

use std::time::Duration;

use crate::db::conn::Conn;
use crate::db::keys::Keys;
use crate::event::Event;

/// For each (entry, event): true unless another entry carried its id first within `window`.
pub(crate) async fn first_sightings(
    conn: &Conn,
    keys: &Keys,
    window: Duration,
    valid: &[(String, Event)],
) -> redis::RedisResult<Vec<bool>> {
    let mut pipe = redis::pipe();
    for (entry, ev) in valid {
        // One round trip per event: sets the owner if absent, answers the previous one.
        pipe.cmd("SET")
            .arg(keys.dedup(&ev.tenant, &ev.id))
            .arg(entry)
            .arg("NX")
            .arg("GET")
            .arg("EX")
            .arg(window.as_secs().max(1));
    }
    let owners: Vec<Option<String>> = pipe.query_async(&mut conn.clone()).await?;
    Ok(valid
        .iter()
        .zip(owners)
        .map(|((entry, _), owner)| first(entry, owner.as_deref()))
        .collect())
}

fn first(entry: &str, owner: Option<&str>) -> bool {
    owner.is_none_or(|o| o == entry)
}

#[cfg(test)]
mod tests {
    use super::first;

    #[test]
    fn the_first_entry_owns_an_id_and_keeps_it_when_read_again() {
        assert!(first("1-0", None), "never seen");
        assert!(first("1-0", Some("1-0")), "the owner read again");
        assert!(!first("2-0", Some("1-0")), "a later entry with the same id");
    }
}
