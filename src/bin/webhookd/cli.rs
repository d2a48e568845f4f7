//! The command line (SPEC 9): every subcommand and flag.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "webhookd",
    version,
    about = "Outbound webhook fan-out dispatcher"
)]
pub(crate) struct Cli {
    /// Config file (default: config.yaml in the working directory, if present).
    #[arg(long, global = true, env = "WEBHOOKD_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run the dispatcher and the API (the default command).
    Serve,
    /// Publish one event envelope to the input stream; prints the stream id.
    Publish {
        #[arg(long)]
        tenant: String,
        #[arg(long = "type")]
        event_type: String,
        /// Event id (default: a fresh `evt_…`).
        #[arg(long)]
        id: Option<String>,
        /// The `data` object as JSON.
        #[arg(long, default_value = "{}")]
        data: String,
        /// A W3C traceparent (`00-<trace id>-<span id>-<flags>`), put in `data.traceparent`:
        /// webhookd's spans for the event join that trace, under that span.
        #[arg(long)]
        traceparent: Option<String>,
    },
    /// Normalize provider payloads and publish them (FILE `-` reads stdin).
    Ingest {
        #[arg(long)]
        provider: String,
        #[arg(long)]
        tenant: String,
        file: PathBuf,
    },
    /// Dead letters: list, replay, purge.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Sign a body read from stdin; prints the three signing headers.
    Sign {
        /// `whsec_…` (hmac-sha256), or the private key `whsk_…` (ed25519: base64 of the
        /// 32-byte seed, or of seed and public key).
        #[arg(long)]
        secret: String,
        #[arg(long)]
        id: String,
        /// Unix seconds (default: now).
        #[arg(long)]
        timestamp: Option<i64>,
        #[arg(long, value_enum, default_value_t = SchemeArg::HmacSha256)]
        scheme: SchemeArg,
    },
    /// Verify a body read from stdin; exit 0 if the signature is valid, 1 if not.
    Verify {
        /// `whsec_…` (hmac-sha256), or the public key `whpk_…` (ed25519).
        #[arg(long)]
        secret: String,
        #[arg(long)]
        id: String,
        #[arg(long)]
        timestamp: i64,
        /// The `webhook-signature` header value.
        #[arg(long)]
        signature: String,
        #[arg(long, value_enum, default_value_t = SchemeArg::HmacSha256)]
        scheme: SchemeArg,
    },
    /// Validate a config file without connecting to anything.
    CheckConfig,
}

/// How `sign` signs and `verify` verifies (an endpoint's `signing`).
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum SchemeArg {
    /// `v1,` entries, HMAC-SHA256 with a `whsec_` secret.
    #[value(name = "hmac-sha256")]
    HmacSha256,
    /// `v1a,` entries, Ed25519.
    Ed25519,
}

#[derive(Subcommand)]
pub(crate) enum DlqCommand {
    /// Show dead letters, oldest first.
    List {
        #[arg(long, value_parser = tenant_arg)]
        tenant: Option<String>,
        #[arg(long)]
        endpoint: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Move dead letters back into the retry queue; prints the count.
    Replay {
        #[command(flatten)]
        select: ReplaySelect,
        #[arg(long, value_parser = tenant_arg)]
        tenant: Option<String>,
    },
    /// Delete dead letters; prints the count.
    Purge {
        #[command(flatten)]
        select: PurgeSelect,
        #[arg(long, value_parser = tenant_arg)]
        tenant: Option<String>,
    },
}

#[derive(Args)]
#[group(required = true, multiple = false)]
pub(crate) struct ReplaySelect {
    /// Dead-letter ids (repeatable).
    #[arg(long = "id", num_args = 1..)]
    pub(crate) ids: Vec<String>,
    #[arg(long)]
    pub(crate) endpoint: Option<String>,
    /// Every dead letter with dead_at at or after this RFC 3339 time.
    #[arg(long)]
    pub(crate) since: Option<String>,
}

#[derive(Args)]
#[group(required = true, multiple = false)]
pub(crate) struct PurgeSelect {
    #[arg(long = "id", num_args = 1..)]
    pub(crate) ids: Vec<String>,
    #[arg(long)]
    pub(crate) endpoint: Option<String>,
}

/// A `--tenant` as the API takes one (a name it would refuse matched nothing, silently).
fn tenant_arg(t: &str) -> Result<String, String> {
    webhookd::ids::TenantId::parse(t)
        .map(|_| t.to_string())
        .map_err(|e| e.to_string())
}
