//! `webhookd sign` and `webhookd verify`: a body read from stdin, signed or checked the way
//! webhookd signs deliveries. `--scheme hmac-sha256` (the default) takes a `whsec_` secret both
//! ways; `--scheme ed25519` signs with a `whsk_` private key and verifies with a `whpk_` public
//! key.

use std::io::Read;
use std::process::ExitCode;

use anyhow::{anyhow, Result};
use webhookd::ids::EventId;
use webhookd::secure::ed25519::PublicKey;
use webhookd::secure::sign::{self, Key, Scheme, SigningKey};
use webhookd::support::clock;

use crate::cli::SchemeArg;

impl From<SchemeArg> for Scheme {
    fn from(s: SchemeArg) -> Scheme {
        match s {
            SchemeArg::HmacSha256 => Scheme::HmacSha256,
            SchemeArg::Ed25519 => Scheme::Ed25519,
        }
    }
}

fn stdin() -> Result<Vec<u8>> {
    let mut body = Vec::new();
    std::io::stdin().read_to_end(&mut body)?;
    Ok(body)
}

/// Prints the three signing headers of the body on stdin.
pub(crate) fn sign(
    scheme: SchemeArg,
    secret: &str,
    id: &str,
    timestamp: Option<i64>,
) -> Result<ExitCode> {
    let key = Key::parse(scheme.into(), secret).map_err(|e| anyhow!("--secret: {e}"))?;
    EventId::parse(id).map_err(|e| anyhow!("--id {e}"))?;
    let body = stdin()?;
    let ts = timestamp.unwrap_or_else(clock::now_secs);
    println!("webhook-id: {id}");
    println!("webhook-timestamp: {ts}");
    println!(
        "webhook-signature: {}",
        sign::signature_header([&key], id, ts, &body)
    );
    Ok(ExitCode::SUCCESS)
}

/// Exit 0 when an entry of `signature` of the scheme verifies the body on stdin, else 1.
pub(crate) fn verify(
    scheme: SchemeArg,
    secret: &str,
    id: &str,
    timestamp: i64,
    signature: &str,
) -> Result<ExitCode> {
    let valid = match Scheme::from(scheme) {
        Scheme::HmacSha256 => {
            let key = SigningKey::from_secret(secret).map_err(|e| anyhow!("--secret: {e}"))?;
            sign::verify_header(&key, id, timestamp, &stdin()?, signature)
        }
        Scheme::Ed25519 => {
            let key = PublicKey::parse(secret).map_err(|e| anyhow!("--secret: {e}"))?;
            key.verify_header(id, timestamp, &stdin()?, signature)
        }
    };
    if valid {
        println!("valid");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: signature does not verify");
        Ok(ExitCode::FAILURE)
    }
}
