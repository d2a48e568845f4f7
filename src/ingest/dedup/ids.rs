//! The duplicate check's names for an id and for the entry that owns it.

use sha1::Sha1;
use sha2::{Digest, Sha256};

/// 128 bits of SHA-1 over (tenant, id), domain-separated from every other use of the hash;
/// `read_checked.lua` makes the same.
pub(super) fn fingerprint(tenant: &str, id: &str) -> [u8; 16] {
    fingerprint_with::<Sha1>(b"webhookd dedup v3\0", tenant, id)
}

/// 24 bits naming the owner entry: stored as a small integer, compact in a listpack.
pub(super) fn owner_tag(entry: &str) -> u32 {
    tag_with::<Sha1>(entry)
}

/// The previous layout's fingerprint: 128 bits of SHA-256.
pub(super) fn fingerprint_v2(tenant: &str, id: &str) -> [u8; 16] {
    fingerprint_with::<Sha256>(b"webhookd dedup v2\0", tenant, id)
}

/// The previous layout's owner tag.
pub(super) fn owner_tag_v2(entry: &str) -> u32 {
    tag_with::<Sha256>(entry)
}

fn fingerprint_with<D: Digest>(domain: &[u8], tenant: &str, id: &str) -> [u8; 16] {
    let mut h = D::new();
    h.update(domain);
    h.update(tenant.as_bytes());
    h.update(b"\0");
    h.update(id.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize()[..16]);
    out
}

fn tag_with<D: Digest>(entry: &str) -> u32 {
    let d = D::digest(entry.as_bytes());
    u32::from_be_bytes([0, d[0], d[1], d[2]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_tell_tenants_and_ids_apart() {
        assert_eq!(fingerprint("t", "a"), fingerprint("t", "a"));
        assert_ne!(fingerprint("t", "a"), fingerprint("t", "b"));
        assert_ne!(fingerprint("t", "a"), fingerprint("u", "a"));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(fingerprint("ab", "c"), fingerprint("a", "bc"));
    }

    /// The values Redis's `redis.sha1hex` gives (`read_checked.lua` makes the same from the
    /// event's JSON): `printf 'webhookd dedup v3\0t1\0e1' | sha1sum`, `printf 1-0 | sha1sum`.
    #[test]
    fn fingerprints_and_tags_are_sha1_as_redis_computes_it() {
        let hex = crate::support::hex::decode::<16>;
        assert_eq!(
            Some(fingerprint("t1", "e1")),
            hex("cd6eae997d8360d25d04f3b2e3ffb530")
        );
        assert_eq!(owner_tag("1-0"), 13971160);
        // And the previous layout's, SHA-256: `… | sha256sum`.
        assert_eq!(
            Some(fingerprint_v2("t1", "e1")),
            hex("d8564a34e6ec8b9bdce7eba87626f303")
        );
        assert_eq!(owner_tag_v2("1-0"), 10683098);
    }

    #[test]
    fn an_owner_tag_is_24_bits_and_stable() {
        assert_eq!(owner_tag("1-0"), owner_tag("1-0"));
        assert_ne!(owner_tag("1-0"), owner_tag("2-0"));
        assert!(owner_tag("1704825600000-17") < 1 << 24);
    }
}
