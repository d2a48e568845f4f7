//! Integration tests: the real `webhookd` binary against real Redis processes and real HTTP
//! receivers on 127.0.0.1. One crate, so the shared helpers are compiled and linked once;
//! one module per SPEC promise, in the SPEC's order.

mod api_common;
mod browser;
mod common;

// SPEC 1–5: what reaches whom, signed how, with what guarantees.
mod checked_reads;
mod backlog_checks;
mod fan_out;
mod filters;
mod isolation;
mod no_silent_loss;
mod operational;
mod ordering;
mod retries;
mod signing;
mod signing_ed25519;
// SPEC 6: the management API.
mod api_security;
mod ed25519_secrets;
mod management_api;
mod portal_browser;
mod portal_operator;
mod portal_pages;
mod portal_sessions;
mod verify_ed25519;
mod verify_snippets;
// SPEC 7: provider payloads.
mod provider_ingest;
// SPEC 8: configuration (secrets at rest, key rotation, the Redis deployments users run).
mod redis_access;
mod cluster;
mod cluster_failover;
mod sentinel;
mod secrets_at_rest;
mod retry_shards;
mod shards;
// SPEC 9: the command line.
mod command_line;
// SPEC 10: operations.
mod operations;
mod traces;
mod trim;
mod upgrade;
// Not a SPEC promise: the shape of the source tree (issue 12).
mod layout;
