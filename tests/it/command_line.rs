//! The command line (SPEC 8, 9): clear one-line failures, signing tools, publishing.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// Runs the binary to its end, which must come within a minute (a command that should fail
/// but starts serving instead is killed and reported, not waited for).
fn run(args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let mut child = Command::new(bin())
        .args(args)
        .env_remove("WEBHOOKD_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command may refuse its arguments before reading stdin: a closed pipe is its answer.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("webhookd {args:?} did not exit within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status.code().unwrap_or(-1),
        out.join().unwrap(),
        err.join().unwrap(),
    )
}

fn config_file(yaml: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.yaml");
    std::fs::write(&p, yaml).unwrap();
    (dir, p.to_string_lossy().into_owned())
}

fn fails_with_one_line(args: &[&str], needles: &[&str]) {
    let (code, _, err) = run(args, b"");
    assert_ne!(code, 0, "{args:?} must fail");
    assert_eq!(err.trim().lines().count(), 1, "one line, got:\n{err}");
    for n in needles {
        assert!(err.contains(n), "`{err}` should mention {n}");
    }
}

/// clap's refusals were several lines (the error, a usage block, a hint).
#[test]
fn a_command_line_clap_refuses_is_one_line_naming_what_is_wrong() {
    fails_with_one_line(&["publish", "--type", "outbound.sent"], &["--tenant"]);
    fails_with_one_line(&["dlq", "replay"], &["--id", "--endpoint", "--since"]);
    fails_with_one_line(&["publish", "--tenat", "t"], &["--tenat", "--tenant"]);
    fails_with_one_line(&["frobnicate"], &["frobnicate"]);
    fails_with_one_line(&["dlq"], &["subcommand"]);
    // A tenant the API would refuse matched nothing: "no dead letters", exit 0.
    fails_with_one_line(&["dlq", "list", "--tenant", "bad tenant!"], &["--tenant"]);
}

#[test]
fn an_unknown_config_key_fails_at_start_naming_it() {
    let (_d, p) = config_file("http:\n  listn: 0.0.0.0:1\n");
    fails_with_one_line(&["serve", "--config", &p], &["http", "listn"]);
    fails_with_one_line(&["check-config", "--config", &p], &["listn"]);
}

#[test]
fn a_bad_duration_fails_naming_the_key() {
    let (_d, p) = config_file("delivery:\n  timeout: 15 parsecs\n");
    fails_with_one_line(
        &["serve", "--config", &p],
        &["delivery.timeout", "15 parsecs"],
    );
}

#[test]
fn an_unreachable_redis_fails_at_start_with_one_clear_line() {
    let port = free_port();
    let (_d, p) = config_file(&format!(
        "redis:\n  url: \"redis://:hunter2@127.0.0.1:{port}\"\nhttp:\n  listen: \"127.0.0.1:{}\"\n",
        free_port()
    ));
    let (code, _, err) = run(&["serve", "--config", &p], b"");
    assert_ne!(code, 0);
    let line = err.trim();
    assert_eq!(line.lines().count(), 1, "{err}");
    assert!(
        line.contains("cannot connect to Redis") && line.contains(&port.to_string()),
        "{line}"
    );
    assert!(
        !line.contains("hunter2"),
        "the password is never printed: {line}"
    );
}

#[test]
fn a_missing_config_file_named_explicitly_is_an_error() {
    fails_with_one_line(
        &["check-config", "--config", "/nonexistent/webhookd.yaml"],
        &["/nonexistent/webhookd.yaml"],
    );
}

#[test]
fn the_sample_config_checks_out() {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/config.yaml");
    let (code, out, err) = run(&["check-config", "--config", p], b"");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("config ok"));
}

#[test]
fn sign_then_verify_round_trips_and_a_tampered_body_fails() {
    let body =
        br#"{"id":"evt_1","service":"outbound","type":"outbound.sent","created_at":1,"data":{}}"#;
    let (code, out, err) = run(
        &[
            "sign",
            "--secret",
            SECRET,
            "--id",
            "evt_1",
            "--timestamp",
            "1700000000",
        ],
        body,
    );
    assert_eq!(code, 0, "{err}");
    let sig = out
        .lines()
        .find_map(|l| l.strip_prefix("webhook-signature: "))
        .unwrap()
        .to_string();
    assert!(out.contains("webhook-id: evt_1") && out.contains("webhook-timestamp: 1700000000"));
    let verify = |b: &[u8], sig: &str| {
        run(
            &[
                "verify",
                "--secret",
                SECRET,
                "--id",
                "evt_1",
                "--timestamp",
                "1700000000",
                "--signature",
                sig,
            ],
            b,
        )
        .0
    };
    assert_eq!(verify(body, &sig), 0);
    assert_eq!(verify(b"{}", &sig), 1);
    assert_eq!(verify(body, "v1,AAAA"), 1);
    // An independent implementation agrees.
    let wh = standardwebhooks::Webhook::new(SECRET).unwrap();
    assert_eq!(wh.sign("evt_1", 1700000000, body).unwrap(), sig);
}

#[test]
fn ed25519_sign_then_verify_round_trips_and_an_independent_verifier_agrees() {
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine;
    use ed25519_dalek::{Signature, SigningKey};
    let key = SigningKey::from_bytes(&[42; 32]);
    let private = format!("whsk_{}", B64.encode(key.to_bytes()));
    let public = format!("whpk_{}", B64.encode(key.verifying_key().to_bytes()));
    let body =
        br#"{"id":"evt_1","service":"outbound","type":"outbound.sent","created_at":1,"data":{}}"#;
    let sign = |secret: &str| {
        let args = [
            "sign", "--scheme", "ed25519", "--secret", secret, "--id", "evt_1",
        ];
        let (code, out, err) = run(&[&args[..], &["--timestamp", "1700000000"]].concat(), body);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("webhook-id: evt_1") && out.contains("webhook-timestamp: 1700000000"));
        out.lines()
            .find_map(|l| l.strip_prefix("webhook-signature: "))
            .unwrap()
            .to_string()
    };
    let sig = sign(&private);
    assert!(sig.starts_with("v1a,") && !sig.contains(' '), "{sig}");
    // libsodium's 64-byte private key (seed and public key) signs the same.
    assert_eq!(
        sign(&format!("whsk_{}", B64.encode(key.to_keypair_bytes()))),
        sig
    );
    // An independent implementation agrees.
    let raw = Signature::from_slice(&B64.decode(&sig[4..]).unwrap()).unwrap();
    let content = [&b"evt_1.1700000000."[..], body].concat();
    assert!(key.verifying_key().verify_strict(&content, &raw).is_ok());

    let verify = |b: &[u8], sig: &str, key: &str, scheme: &str| {
        let args = [
            "verify", "--scheme", scheme, "--secret", key, "--id", "evt_1",
        ];
        let rest = ["--timestamp", "1700000000", "--signature", sig];
        run(&[&args[..], &rest[..]].concat(), b).0
    };
    assert_eq!(verify(body, &sig, &public, "ed25519"), 0);
    assert_eq!(
        verify(b"{}", &sig, &public, "ed25519"),
        1,
        "a tampered body"
    );
    let stranger = SigningKey::from_bytes(&[7; 32]).verifying_key();
    let stranger = format!("whpk_{}", B64.encode(stranger.to_bytes()));
    assert_eq!(verify(body, &sig, &stranger, "ed25519"), 1, "another key");
    assert_eq!(
        verify(body, &sig, SECRET, "hmac-sha256"),
        1,
        "a v1a entry is no v1 one"
    );
    fails_with_one_line(
        &[
            "sign", "--scheme", "ed25519", "--secret", SECRET, "--id", "evt_1",
        ],
        &["--secret", "whsk_"],
    );
    let args = [
        "--id",
        "evt_1",
        "--timestamp",
        "1",
        "--signature",
        "v1a,AAAA",
    ];
    fails_with_one_line(
        &[
            &["verify", "--scheme", "ed25519", "--secret", &private][..],
            &args[..],
        ]
        .concat(),
        &["--secret", "whpk_"],
    );
}

#[test]
fn a_bad_secret_is_refused_with_one_line() {
    let (code, _, err) = run(&["sign", "--secret", "nope", "--id", "x"], b"{}");
    assert_eq!(code, 1);
    assert!(err.contains("whsec_"), "{err}");
}

#[test]
fn publish_appends_a_valid_envelope_and_refuses_an_invalid_one() {
    let prefix = unique_prefix("cli");
    let (_d, p) = config_file(&format!(
        "redis:\n  url: \"{}\"\n  key_prefix: \"{prefix}\"\n",
        redis_url()
    ));
    let (code, out, err) = run(
        &[
            "publish",
            "--config",
            &p,
            "--tenant",
            "t1",
            "--type",
            "outbound.sent",
            "--id",
            "e1",
            "--data",
            r#"{"a":1}"#,
        ],
        b"",
    );
    assert_eq!(code, 0, "{err}");
    let stream_id = out.trim();
    let mut r = redis();
    let entries: Vec<(String, std::collections::HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg(format!("{prefix}events"))
        .arg("-")
        .arg("+")
        .query(&mut r)
        .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, stream_id);
    let ev: serde_json::Value = serde_json::from_str(&entries[0].1["event"]).unwrap();
    assert_eq!(ev["tenant"], "t1");
    assert_eq!(ev["data"]["a"], 1);
    let (code, _, err) = run(
        &["publish", "--config", &p, "--tenant", "t1", "--type", "Bad"],
        b"",
    );
    assert_eq!(code, 1);
    assert!(err.contains("`type`"), "{err}");
}

#[test]
fn every_command_has_help() {
    for cmd in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["publish", "--help"],
        vec!["ingest", "--help"],
        vec!["dlq", "list", "--help"],
        vec!["dlq", "replay", "--help"],
        vec!["dlq", "purge", "--help"],
        vec!["sign", "--help"],
        vec!["verify", "--help"],
        vec!["check-config", "--help"],
    ] {
        let (code, out, _) = run(&cmd, b"");
        assert_eq!(code, 0, "{cmd:?}");
        assert!(out.contains("Usage"), "{cmd:?}");
    }
}

#[test]
fn a_yaml_syntax_error_is_one_line_with_its_position() {
    let (_d, p) = config_file("http:\n  listen: [unclosed\n");
    fails_with_one_line(
        &["check-config", "--config", &p],
        &["invalid YAML", "line 2"],
    );
}
