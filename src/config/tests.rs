use base64::Engine;

use super::*;
use crate::support::duration::Dur;

fn load(yaml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_yaml_and_env(
        yaml,
        "test.yaml",
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )
}

#[test]
fn every_key_has_a_default() {
    let c = load("", &[]).unwrap();
    assert_eq!(c.redis.key_prefix, "webhookd:");
    assert_eq!(c.stream.claim_idle, Dur::secs(30));
    assert_eq!(c.delivery.per_endpoint_in_flight, 16);
    assert_eq!(c.retry.schedule.len(), 7);
    assert_eq!(c.shutdown_grace, Dur::secs(20));
    assert!(!c.delivery.allow_http);
}

#[test]
fn unknown_keys_are_named() {
    let e = load("http:\n  listenn: 0.0.0.0:1\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("http") && e.contains("listenn"), "{e}");
    let e = load("bogus: 1\n", &[]).unwrap_err().to_string();
    assert!(e.contains("bogus"), "{e}");
}

#[test]
fn bad_durations_name_the_key() {
    let e = load("retry:\n  schedule: [5s, 5x]\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("retry.schedule") && e.contains("5x"), "{e}");
    let e = load("shutdown_grace: soon\n", &[]).unwrap_err().to_string();
    assert!(e.contains("shutdown_grace"), "{e}");
}

/// A count no semaphore holds passed `check-config`, then panicked in `serve` (at start for
/// `max_in_flight`, at the first delivery for `per_endpoint_in_flight`).
#[test]
fn counts_of_attempts_in_flight_are_bounded_naming_the_key() {
    for key in ["max_in_flight", "per_endpoint_in_flight"] {
        for bad in ["18446744073709551615", "100001", "0"] {
            let e = load(&format!("delivery:\n  {key}: {bad}\n"), &[])
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("delivery.{key}")), "{key}: {bad}: {e}");
        }
        assert!(load(&format!("delivery:\n  {key}: 100000\n"), &[]).is_ok());
    }
}

#[test]
fn environment_overrides_sections_lists_and_top_level_keys() {
    let c = load(
        "redis:\n  url: redis://a:1\n",
        &[
            ("WEBHOOKD_REDIS__URL", "redis://b:2"),
            (
                "WEBHOOKD_HTTP__ADMIN_TOKENS",
                "aaaaaaaaaaaaaaaa, bbbbbbbbbbbbbbbb",
            ),
            ("WEBHOOKD_STREAM__BATCH", "17"),
            ("WEBHOOKD_DELIVERY__ALLOW_HTTP", "true"),
            ("WEBHOOKD_RETRY__SCHEDULE", "1s,2s"),
            ("WEBHOOKD_SHUTDOWN_GRACE", "3s"),
            ("WEBHOOKD_PORT_8080_TCP", "tcp://10.0.0.1:8080"),
        ],
    )
    .unwrap();
    assert_eq!(c.redis.url, "redis://b:2");
    assert_eq!(c.http.admin_tokens.len(), 2);
    assert_eq!(c.stream.batch, 17);
    assert!(c.delivery.allow_http);
    assert_eq!(c.retry.schedule, vec![Dur::secs(1), Dur::secs(2)]);
    assert_eq!(c.shutdown_grace, Dur::secs(3));
}

#[test]
fn unknown_environment_keys_are_named() {
    let e = load("", &[("WEBHOOKD_HTTP__LISTN", "x")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("listn"), "{e}");
}

#[test]
fn environment_names_no_key_can_take_are_refused_naming_the_variable() {
    for (var, needle) in [
        ("WEBHOOKD_REDIS__URL__X", "redis.url.x"),
        ("WEBHOOKD_EVENT_TYPES", "config file"),
        ("WEBHOOKD_ENDPOINTS", "config file"),
    ] {
        let e = load("", &[(var, "a.b")]).unwrap_err().to_string();
        assert!(e.contains(var) && e.contains(needle), "{var}: {e}");
    }
}

#[test]
fn redis_mode_mistakes_are_caught_naming_the_key() {
    for (yaml, key) in [
        (
            "redis:\n  url: \"redis://u:pw@a:1,redis://u:pw@b:2\"\n",
            "redis.url",
        ),
        (
            "redis:\n  url: redis://s:26379\n  sentinel_master: m\n",
            "redis.sentinel_master",
        ),
        (
            "redis:\n  mode: cluster\n  url: \"redis://a:1/3,redis://b:2\"\n",
            "redis.url",
        ),
    ] {
        let e = load(yaml, &[]).unwrap_err().to_string();
        assert!(e.contains(key) && !e.contains("pw"), "{yaml}: {e}");
    }
    load(
        "redis:\n  mode: cluster\n  url: \"redis://a:1/0,redis://b:2/\"\n",
        &[],
    )
    .unwrap();
}

#[test]
fn a_new_event_type_in_the_reserved_service_is_refused() {
    let e = load("event_types:\n  - type: webhookd.custom\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("event_types[0].type") && e.contains("reserved"),
        "{e}"
    );
    // Describing one of webhookd's own is allowed.
    load(
        "event_types:\n  - type: webhookd.endpoint.disabled\n    description: paged\n",
        &[],
    )
    .unwrap();
}

#[test]
fn encryption_key_must_be_32_bytes_of_base64() {
    let e = load("signing:\n  encryption_key: abc\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("signing.encryption_key"), "{e}");
    let ok = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let c = load(&format!("signing:\n  encryption_key: {ok}\n"), &[]).unwrap();
    assert_eq!(c.encryption_key_bytes().unwrap(), Some([7u8; 32]));
}

#[test]
fn the_sample_config_is_valid() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.yaml"))
        .expect("config.yaml at the repository root");
    load(&text, &[]).unwrap();
}

#[test]
fn redis_access_keys_are_checked_naming_the_key() {
    load(
        "redis:\n  mode: cluster\n  url: \"redis://a:7000,redis://b:7001\"\n",
        &[],
    )
    .unwrap();
    let err = load("redis:\n  mode: clustered\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("redis.mode") && err.contains("clustered"),
        "{err}"
    );
    let err = load("redis:\n  mode: sentinel\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("redis.sentinel_master"), "{err}");
    let sentinels = "redis:\n  mode: sentinel\n  sentinel_master: m\n  url: \"redis://a:26379,redis://b:26379\"\n";
    assert!(load(sentinels, &[]).is_ok());
    let mixed = sentinels.replace("redis://b", "rediss://b");
    let err = load(&mixed, &[]).unwrap_err().to_string();
    assert!(err.contains("redis.url") && err.contains("mixes"), "{err}");
    let ca = std::env::temp_dir().join(format!("webhookd-ca-{}.pem", std::process::id()));
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let over_tls = format!(
        "{}  ca_file: \"{}\"\n",
        sentinels.replace("redis://", "rediss://"),
        ca.display()
    );
    let checked = load(&over_tls, &[]);
    std::fs::remove_file(&ca).unwrap();
    assert!(
        checked.is_ok(),
        "TLS sentinels with a CA: {:?}",
        checked.err()
    );
    let err = load("redis:\n  mode: ring\n", &[]).unwrap_err().to_string();
    assert!(err.contains("redis.mode"), "{err}");
    let err = load("redis:\n  ca_file: /nonexistent/ca.pem\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("redis.ca_file") && err.contains("rediss://"),
        "{err}"
    );
    let yaml = "redis:\n  url: rediss://h:6380\n  ca_file: /nonexistent/ca.pem\n";
    let err = load(yaml, &[]).unwrap_err().to_string();
    assert!(
        err.contains("redis.ca_file") && err.contains("cannot read"),
        "{err}"
    );
    let err = load("redis:\n  username: u\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("redis.username"), "{err}");
    let c = load(
        "",
        &[
            ("WEBHOOKD_REDIS__PASSWORD", "pw"),
            ("WEBHOOKD_REDIS__USERNAME", "u"),
        ],
    )
    .unwrap();
    assert_eq!(
        (c.redis.username.as_str(), c.redis.password.as_str()),
        ("u", "pw")
    );
}

#[test]
fn the_dedup_window_is_a_duration_and_shards_are_from_1_to_256() {
    let c = load("stream:\n  dedup_window: 2h\n", &[]).unwrap();
    assert_eq!(c.stream.dedup_window, Dur::secs(7200));
    assert_eq!(load("", &[]).unwrap().stream.dedup_window, Dur::secs(86400));
    let err = load("stream:\n  dedup_window: 0s\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("stream.dedup_window"), "{err}");
    assert_eq!(
        load("stream:\n  shards: 16\n", &[]).unwrap().stream.shards,
        16
    );
    for bad in ["0", "257"] {
        let err = load(&format!("stream:\n  shards: {bad}\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("stream.shards"), "{err}");
    }
}

/// `stream.block` 0 made Redis's `BLOCK 0` (wait forever: a SIGTERM then waited out the whole
/// grace) and the reads' pauses spin (1,400 `XREAD`s a second on an idle replica); past a
/// minute, shutdown and the claiming of stuck entries wait that long for a read to end.
#[test]
fn the_read_block_is_above_0_and_at_most_a_minute() {
    for ok in ["1ms", "1s", "60s"] {
        load(&format!("stream:\n  block: {ok}\n"), &[]).unwrap();
    }
    for bad in ["0s", "0ms", "61s", "1h"] {
        let err = load(&format!("stream:\n  block: {bad}\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("stream.block"), "{bad}: {err}");
    }
}

#[test]
fn public_url_must_be_an_http_url() {
    let ok = load("http:\n  public_url: https://hooks.example.com/\n", &[]).unwrap();
    assert_eq!(ok.http.public_url, "https://hooks.example.com/");
    for bad in ["hooks.example.com", "https://h/?x=1", "ftp://h"] {
        let err = load(&format!("http:\n  public_url: \"{bad}\"\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("http.public_url"), "{bad}: {err}");
    }
}

#[test]
fn otlp_endpoint_is_off_by_default_and_posts_to_v1_traces_when_set() {
    assert_eq!(load("", &[]).unwrap().otlp_traces_url().unwrap(), None);
    let c = load("telemetry:\n  otlp_endpoint: http://collector:4318/\n", &[]).unwrap();
    assert_eq!(
        c.otlp_traces_url().unwrap().unwrap().to_string(),
        "http://collector:4318/v1/traces"
    );
    let c = load(
        "",
        &[(
            "WEBHOOKD_TELEMETRY__OTLP_ENDPOINT",
            "https://otlp.example.com/base",
        )],
    )
    .unwrap();
    assert_eq!(
        c.otlp_traces_url().unwrap().unwrap().to_string(),
        "https://otlp.example.com/base/v1/traces"
    );
    let c = load("", &[("WEBHOOKD_TELEMETRY__OTLP_ENDPOINT", "")]).unwrap();
    assert_eq!(c.otlp_traces_url().unwrap(), None, "empty means off");
}

#[test]
fn a_bad_otlp_endpoint_names_the_key() {
    for bad in [
        "collector:4318",
        "grpc://collector:4317",
        "http://",
        "http://u:secret@collector:4318",
        "http://collector:4318/?x=1",
        "http://coll ector",
    ] {
        let err = load(&format!("telemetry:\n  otlp_endpoint: \"{bad}\"\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("telemetry.otlp_endpoint"), "{bad}: {err}");
        assert!(!err.contains("secret"), "credentials stay out: {err}");
    }
}
