//! webhookd: an outbound webhook fan-out dispatcher.
//!
//! An event flows one way, and the modules below are listed in its order:
//! a provider's payload is `normalize`d into an envelope and `publish`ed to a Redis stream;
//! `ingest` reads the stream (claim, validate, set aside the invalid, drop duplicates);
//! `fanout` matches each event against the `registry`'s endpoints and makes one delivery
//! per match; `deliver` waits for room at the endpoint, signs and attempts it, and records its
//! fate; a failed delivery waits in `retry` (scheduled, parked behind its endpoint, or
//! dead-lettered) until `deliver` pulls it back. Customers manage endpoints through `api`;
//! `ops` exports metrics, health and traces and trims the stream; `app` wires the stages together.
//!
//! Beneath them: `ids` (each kind of id, parsed once), `event` (the envelope, filters, the type catalog), `config`, `db` (the
//! Redis connection and key names), `secure` (signatures, sealing, the SSRF guard) and
//! `support` (time, durations, shutdown, backoff).
//!
//! Public (`pub`) is only what the binaries, benches and integration tests use; everything
//! else is `pub(crate)`, and `unreachable_pub` keeps it so.

#![warn(unreachable_pub)]

// The pipeline, in the order an event meets it.
pub mod normalize;
pub mod publish;
mod ingest;
mod fanout;
mod notice;
pub mod deliver;
pub mod retry;
// Beside it: the endpoints it delivers to, the API that manages them, running it, wiring it.
pub mod registry;
mod api;
pub mod ops;
pub mod app;
// Beneath it.
pub mod ids;
pub mod event;
pub mod config;
pub mod db;
pub mod secure;
pub mod support;
