//! The `webhookd` command line (SPEC 9): parse, load config, call into the library.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use clap::Parser;

mod cli;
mod dlq;
mod signing;

use cli::{Cli, Command};
use dlq::dlq_command;
use webhookd::config::Config;
use webhookd::db::conn::connect_config;
use webhookd::db::shards::Shards;
use webhookd::ids::TenantId;
use webhookd::normalize::{self, Provider};
use webhookd::ops::TraceParent;
use webhookd::publish;
use webhookd::support::clock;
use webhookd::{app, event};

fn main() -> ExitCode {
    tune_allocator();
    raise_open_files_limit();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// A command line clap refuses, in one line like every other failure (README: "A failure
/// prints one line starting with `error:`"); help and version as clap prints them.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        eprintln!("error: a subcommand is needed (see --help)");
        return ExitCode::from(2);
    }
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
    }
    let text = e.render().to_string();
    let mut line = String::new();
    for part in text
        .lines()
        .take_while(|l| !l.starts_with("Usage:"))
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
    {
        let part = part.strip_prefix("error: ").unwrap_or(part);
        if !line.is_empty() {
            line.push_str(if part.starts_with("tip:") { "; " } else { " " });
        }
        line.push_str(part);
    }
    eprintln!("error: {line} (see --help)");
    ExitCode::from(2)
}

/// mimalloc instead of glibc's malloc: a fan-out allocates and frees many small buffers on
/// both worker threads, and glibc's arenas either contend on one lock (a fifth of the CPU of a
/// 100,000-endpoint fan-out went to malloc and free) or, one per thread, leave RSS far above
/// live memory. Built without transparent huge pages (`no_thp`), which made RSS grow in 2 MiB
/// steps (BENCHMARKS.md, issue 16).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc.h's `mi_option_e`: mimalloc keeps its options' numbers
/// (retired ones stay as `deprecated_*`), but `libmimalloc-sys` names no constant for this one.
/// Checked against the mimalloc 3.3.2 that `libmimalloc-sys` 0.1.49 bundles; recheck on a bump.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Freed memory goes back to the OS after 10 ms rather than mimalloc 3's 1 s: loading 10,000
/// endpoints and then fanning out to them otherwise peaks ~12 MiB higher, for ~no CPU saved.
/// An operator's `MIMALLOC_PURGE_DELAY` wins.
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one of mimalloc's option values; any thread may, at any time.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 10) };
    }
}

/// Raises the soft open-files limit to the hard one: a thousand slow endpoints at eight
/// connections each, plus the idle pool, pass the usual soft limit of 1,024, and running out
/// of descriptors would fail deliveries for every tenant.
fn raise_open_files_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// The error and its causes on one line, each cause once (wrapping errors often repeat it).
fn one_line(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn load_config(path: &Option<PathBuf>) -> Result<Config> {
    let (p, must) = match path {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from("config.yaml"), false),
    };
    Ok(Config::load(&p, must)?)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn read_input(file: &PathBuf) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    if file.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut buf)?;
    } else {
        buf = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    }
    Ok(buf)
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let config = load_config(&cli.config)?;
            init_json_logs();
            runtime()?.block_on(app::serve(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig => {
            let config = load_config(&cli.config)?;
            println!(
                "config ok: {} static endpoint(s), {} extra event type(s)",
                config.endpoints.len(),
                config.event_types.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Sign {
            secret,
            id,
            timestamp,
            scheme,
        } => signing::sign(scheme, &secret, &id, timestamp),
        Command::Verify {
            secret,
            id,
            timestamp,
            signature,
            scheme,
        } => signing::verify(scheme, &secret, &id, timestamp, &signature),
        Command::Publish {
            tenant,
            event_type,
            id,
            data,
            traceparent,
        } => {
            let mut data: serde_json::Value = serde_json::from_str(&data)
                .map_err(|e| anyhow!("--data is not valid JSON: {e}"))?;
            if let Some(tp) = traceparent {
                let parsed = TraceParent::parse(&tp).ok_or_else(|| {
                    anyhow!("--traceparent `{tp}` is not a W3C traceparent: 00-<32 hex digits trace id>-<16 hex digits span id>-<2 hex digits flags>, lowercase, ids not all zeros")
                })?;
                let Some(fields) = data.as_object_mut() else {
                    return Err(anyhow!("--data must be a JSON object"));
                };
                fields.insert("traceparent".into(), parsed.to_string().into());
            }
            let config = load_config(&cli.config)?;
            let id = id.unwrap_or_else(event::new_id);
            let raw = event::envelope_json(&id, &event_type, &tenant, clock::now_secs(), &data);
            let ids = runtime()?.block_on(async {
                let conn = connect_config(&config.redis, std::time::Duration::from_secs(10))
                    .await
                    .map_err(|e| anyhow!(e))?;
                let shards = Shards::of(&config);
                Ok::<_, anyhow::Error>(
                    publish::publish_raw(&conn, &shards, &[raw], config.stream.max_event_bytes)
                        .await?,
                )
            })?;
            println!("{}", ids[0].stream_id);
            Ok(ExitCode::SUCCESS)
        }
        Command::Ingest {
            provider,
            tenant,
            file,
        } => {
            let config = load_config(&cli.config)?;
            let provider: Provider = provider.parse().map_err(|e| anyhow!("--provider: {e}"))?;
            TenantId::parse(&tenant).map_err(|e| anyhow!("--tenant {e}"))?;
            let text =
                String::from_utf8(read_input(&file)?).map_err(|_| anyhow!("input is not UTF-8"))?;
            let payloads = normalize::parse_input(&text)?;
            let events = normalize::normalize(
                provider,
                &serde_json::Value::Array(payloads),
                clock::now_secs(),
            )?;
            let envelopes = publish::envelopes(&tenant, &events);
            let published = runtime()?.block_on(async {
                let conn = connect_config(&config.redis, std::time::Duration::from_secs(10))
                    .await
                    .map_err(|e| anyhow!(e))?;
                let shards = Shards::of(&config);
                Ok::<_, anyhow::Error>(
                    publish::publish_raw(&conn, &shards, &envelopes, config.stream.max_event_bytes)
                        .await?,
                )
            })?;
            let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
            println!(
                "{}",
                serde_json::json!({"published": published.len(), "ids": ids})
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Dlq(cmd) => {
            let config = load_config(&cli.config)?;
            runtime()?.block_on(dlq_command(config, cmd))
        }
    }
}

fn init_json_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_writer(std::io::stdout)
        .init();
}
