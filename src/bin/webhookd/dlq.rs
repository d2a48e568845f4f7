//! `webhookd dlq`: list, replay and purge dead letters from the command line.

use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};

use crate::cli::DlqCommand;
use webhookd::config::Config;
use webhookd::db::conn::connect_config;
use webhookd::db::shards::Shards;
use webhookd::registry::Store;
use webhookd::retry::dlq::{not_a_letter_id, Dlq, Selector};
use webhookd::retry::{RetryQueue, RetryShards};
use webhookd::support::clock;

pub(crate) async fn dlq_command(config: Config, cmd: DlqCommand) -> Result<ExitCode> {
    let conn = connect_config(&config.redis, std::time::Duration::from_secs(30))
        .await
        .map_err(|e| anyhow!(e))?;
    let shards = Shards::of(&config);
    let dlq = Dlq::new(conn.clone(), &shards);
    match cmd {
        DlqCommand::List {
            tenant,
            endpoint,
            json,
        } => {
            let mut cursor: Option<String> = None;
            let mut shown = 0;
            loop {
                let page = dlq
                    .list(
                        tenant.as_deref(),
                        endpoint.as_deref(),
                        cursor.as_deref(),
                        250,
                    )
                    .await?;
                for dl in &page.letters {
                    shown += 1;
                    if json {
                        println!("{}", serde_json::to_string(dl)?);
                    } else {
                        println!(
                            "{}  {}  {}  {}  {}  attempts={}  status={}  {}",
                            dl.id,
                            dl.dead_at,
                            dl.tenant,
                            dl.endpoint_id,
                            dl.event_id,
                            dl.attempts,
                            dl.last_status.map_or("-".to_string(), |s| s.to_string()),
                            dl.last_error.as_deref().unwrap_or("")
                        );
                    }
                }
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            if !json && shown == 0 {
                eprintln!("no dead letters");
            }
        }
        DlqCommand::Replay { select, tenant } => {
            if let Some(bad) = dlq.misnamed(&select.ids) {
                bail!(not_a_letter_id(bad));
            }
            let sel = if !select.ids.is_empty() {
                Selector::Ids(select.ids)
            } else if let Some(e) = select.endpoint {
                Selector::Endpoint(e)
            } else {
                let since = select.since.expect("clap requires one selector");
                let ms = clock::parse_rfc3339(&since).ok_or_else(|| {
                    anyhow!("--since `{since}` is not an RFC 3339 time (e.g. 2024-01-09T00:00:00Z)")
                })?;
                Selector::Since(ms)
            };
            // Replays go to each endpoint's home; queues left to drain do not matter here.
            let store = Store::new(conn.clone(), shards.base().clone());
            let queue = RetryQueue::new(conn, RetryShards::new(&shards, 1));
            let n = dlq.replay(tenant.as_deref(), &sel, &queue, &store).await?;
            println!("{}", n.replayed);
            if n.endpoint_deleted > 0 {
                eprintln!(
                    "{} dead letters kept: their endpoint was deleted (`webhookd dlq purge` removes them)",
                    n.endpoint_deleted
                );
            }
        }
        DlqCommand::Purge { select, tenant } => {
            if let Some(bad) = dlq.misnamed(&select.ids) {
                bail!(not_a_letter_id(bad));
            }
            let sel = if !select.ids.is_empty() {
                Selector::Ids(select.ids)
            } else {
                Selector::Endpoint(select.endpoint.expect("clap requires one selector"))
            };
            println!("{}", dlq.purge(tenant.as_deref(), &sel).await?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
