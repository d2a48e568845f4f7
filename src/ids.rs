//! The ids webhookd passes around, each its own type: parsed once where it enters (an envelope,
//! an API path, the config, the command line), with one rule and one message per kind, and
//! cheap to clone afterwards (shared, not copied).
//!
//! Ids read back from webhookd's own Redis records were parsed when they first entered, so
//! they are taken as they are (`stored`), not judged again.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a text is not an id of its kind: "must be …", to follow the name of what was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be {rule}")]
pub struct IdError {
    pub rule: &'static str,
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $valid:ident, $rule:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            pub const RULE: &'static str = $rule;

            pub fn parse(text: &str) -> Result<$name, IdError> {
                if $valid(text) {
                    Ok($name(text.into()))
                } else {
                    Err(IdError { rule: Self::RULE })
                }
            }

            /// An id from webhookd's own records, judged when it first entered.
            pub fn stored(text: impl Into<Arc<str>>) -> $name {
                $name(text.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The shared text, for maps keyed by it.
            pub fn as_arc(&self) -> &Arc<str> {
                &self.0
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                &*self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                &*self.0 == *other
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(text: &str) -> Result<$name, IdError> {
                $name::parse(text)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                let text = String::deserialize(d)?;
                $name::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// A tenant (SPEC 1).
    TenantId,
    valid_tenant,
    "1-64 characters of [A-Za-z0-9_.-], other than `.` and `..`"
);
id_type!(
    /// An event's id, unique per event and tenant (SPEC 1).
    EventId,
    valid_id,
    "1-128 characters of [A-Za-z0-9_.:-]"
);
id_type!(
    /// An endpoint's id (SPEC 6).
    EndpointId,
    valid_endpoint_id,
    "1-128 characters of [A-Za-z0-9_.:-], other than `.` and `..`"
);
id_type!(
    /// An event type: two or more dot-separated segments (SPEC 2).
    EventType,
    valid_type,
    "2+ dot-separated segments of [a-z0-9_]"
);

impl EventType {
    /// The first segment, e.g. `outbound` (the body's `service`).
    pub fn service(&self) -> &str {
        self.0.split('.').next().unwrap_or_default()
    }
}

/// One delivery of one event to one endpoint: made by webhookd, never parsed from input, so
/// the same stream entry read again makes the same ids and a replay makes new ones.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeliveryId(String);

impl DeliveryId {
    /// A delivery of a stream entry's event.
    pub fn of(entry: &str, endpoint: &str) -> DeliveryId {
        DeliveryId([entry, ":", endpoint].concat())
    }

    /// A replay of a dead letter: a new delivery, so never taken for the one that died.
    pub fn replay(letter: &str, endpoint: &str) -> DeliveryId {
        DeliveryId(format!("rp:{letter}:{endpoint}"))
    }

    /// A delivery id from webhookd's own records.
    pub fn stored(text: String) -> DeliveryId {
        DeliveryId(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for DeliveryId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

fn valid_id(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

fn valid_tenant(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && !dot_segment(s)
}

fn valid_endpoint_id(s: &str) -> bool {
    valid_id(s) && !dot_segment(s)
}

/// `.` and `..` name no resource in a URL path: browsers and most HTTP clients resolve them
/// away (RFC 3986 5.2.4), so `/v1/tenants/../endpoints` would reach `/v1/endpoints`.
fn dot_segment(s: &str) -> bool {
    s == "." || s == ".."
}

/// One segment of an event type or of a filter pattern.
pub(crate) fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn valid_type(s: &str) -> bool {
    s.len() <= 256 && s.split('.').count() >= 2 && s.split('.').all(valid_segment)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_rule_and_one_message() {
        assert!(TenantId::parse("acme-1.eu_west").is_ok());
        assert!(TenantId::parse("a:b").is_err(), "no colon in tenants");
        assert!(TenantId::parse(&"t".repeat(65)).is_err());
        for dots in [".", ".."] {
            assert!(TenantId::parse(dots).is_err(), "tenant {dots}");
            assert!(EndpointId::parse(dots).is_err(), "endpoint {dots}");
        }
        assert!(TenantId::parse("...").is_ok() && EventId::parse("..").is_ok());
        assert!(EventId::parse("evt_01:x.y-z").is_ok());
        assert!(EventId::parse("").is_err() && EventId::parse(&"e".repeat(129)).is_err());
        assert!(EndpointId::parse("ep with space").is_err());
        assert!(EventType::parse("outbound.delivered").is_ok());
        for bad in [
            "outbound",
            "Outbound.sent",
            "outbound..sent",
            "outbound.sent.",
        ] {
            assert!(EventType::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            TenantId::parse("a b").unwrap_err().to_string(),
            "must be 1-64 characters of [A-Za-z0-9_.-], other than `.` and `..`"
        );
        assert_eq!(
            EventId::parse("").unwrap_err().to_string(),
            "must be 1-128 characters of [A-Za-z0-9_.:-]"
        );
    }

    #[test]
    fn ids_read_from_json_are_judged_and_written_as_plain_strings() {
        let t: TenantId = serde_json::from_str(r#""acme""#).unwrap();
        assert_eq!(serde_json::to_string(&t).unwrap(), r#""acme""#);
        let bad = serde_json::from_str::<TenantId>(r#""a b""#).unwrap_err();
        assert!(bad.to_string().contains("must be 1-64"), "{bad}");
        let d = DeliveryId::of("17-0", "ep_a");
        assert_eq!(serde_json::to_string(&d).unwrap(), r#""17-0:ep_a""#);
    }

    #[test]
    fn a_delivery_id_is_the_same_for_the_same_entry_and_new_for_a_replay() {
        assert_eq!(
            DeliveryId::of("17-0", "ep_a"),
            DeliveryId::of("17-0", "ep_a")
        );
        assert_ne!(
            DeliveryId::of("17-0", "ep_a"),
            DeliveryId::of("17-1", "ep_a")
        );
        assert_eq!(DeliveryId::replay("9-0", "ep_a").as_str(), "rp:9-0:ep_a");
    }

    #[test]
    fn an_event_type_names_its_service() {
        assert_eq!(
            EventType::parse("inbound.received").unwrap().service(),
            "inbound"
        );
    }

    #[test]
    fn grammar_edges() {
        assert!(valid_type("outbound.delivered") && valid_type("a.b.c") && valid_type("x_1.y2"));
        for bad in ["", "a", "a.", ".a", "a..b", "A.b", "a-b.c", "a.b*"] {
            assert!(!valid_type(bad), "{bad}");
        }
        assert!(valid_id(&"a".repeat(128)) && !valid_id(&"a".repeat(129)) && !valid_id(""));
        assert!(valid_id("evt_8ab158a4-071a-4199-b33c-8e8258cad7ec") && valid_id("a.b:c"));
        assert!(!valid_id("evt abc") && !valid_id("évt"));
        assert!(valid_tenant(&"a".repeat(64)) && !valid_tenant(&"a".repeat(65)));
    }
}
