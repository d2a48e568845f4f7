//! Redis Cluster: redis-rs's cluster client follows the slot map (`MOVED`, `ASK`, a resharding
//! or a failover) and routes each command to the node that owns its key. What it cannot do is
//! send one pipeline to several nodes, so a pipeline whose commands live in different slots is
//! split here, one pipeline (or transaction) per slot, and the replies are put back in order.
//! A transaction is therefore atomic per hash tag: every one webhookd needs atomic keeps its
//! keys under one tag.

use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

use crate::db::conn::access::Access;

#[derive(Clone)]
pub(super) struct Cluster {
    conn: ClusterConnection,
}

/// Connects to the cluster that the seed `urls` belong to.
pub(super) async fn connect(
    urls: &[String],
    access: &Access,
    response_timeout: Duration,
) -> RedisResult<Cluster> {
    let mut builder = ClusterClientBuilder::new(urls.to_vec())
        .response_timeout(response_timeout)
        .connection_timeout(Duration::from_secs(2));
    if let Some(user) = &access.username {
        builder = builder.username(user);
    }
    if let Some(password) = &access.password {
        builder = builder.password(password);
    }
    if let Some(pem) = &access.ca_pem {
        builder = builder.certs(redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.clone()),
        });
    }
    let conn = builder.build()?.get_async_connection().await?;
    Ok(Cluster { conn })
}

/// The slot of a command's first key, for the commands webhookd pipelines (`None`: no key).
fn slot_of(cmd: &Cmd) -> Option<Slot> {
    let args: Vec<&[u8]> = cmd
        .args_iter()
        .filter_map(|a| match a {
            redis::Arg::Simple(bytes) => Some(bytes),
            _ => None,
        })
        .collect();
    let name = args.first()?.to_ascii_uppercase();
    let key = match name.as_slice() {
        // Subcommand first, then the key.
        b"XINFO" | b"XGROUP" | b"MEMORY" | b"OBJECT" => args.get(2)?,
        b"EVAL" | b"EVALSHA" => match std::str::from_utf8(args.get(2)?).ok()?.parse::<u32>() {
            Ok(n) if n > 0 => args.get(3)?,
            _ => return None,
        },
        b"XREAD" | b"XREADGROUP" => {
            let at = args
                .iter()
                .position(|a| a.eq_ignore_ascii_case(b"STREAMS"))?;
            args.get(at + 1)?
        }
        _ => args.get(1)?,
    };
    Some(Slot::for_key(key))
}

/// Commands with their positions in a pipeline.
type Group<'a> = Vec<(usize, &'a Cmd)>;

/// Commands of `pipe` grouped by slot, in the order each slot first appears, with their
/// positions in `pipe`.
fn by_slot(pipe: &Pipeline) -> Vec<Group<'_>> {
    let mut groups: Vec<(Option<Slot>, Group<'_>)> = Vec::new();
    for (i, cmd) in pipe.cmd_iter().enumerate() {
        let s = slot_of(cmd);
        match groups.iter_mut().find(|(g, _)| *g == s || s.is_none()) {
            Some((_, cmds)) => cmds.push((i, cmd)),
            None => groups.push((s, vec![(i, cmd)])),
        }
    }
    groups.into_iter().map(|(_, cmds)| cmds).collect()
}

impl Cluster {
    pub(super) fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.conn.req_packed_command(cmd)
    }

    pub(super) fn req_packed_commands<'a>(
        &'a mut self,
        pipe: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(self.send(pipe, offset, count, false))
    }

    /// As `req_packed_commands`, but the slots' pipelines are sent all at once rather than one
    /// after another: for pipelines that need no order between keys of different slots. A
    /// batch of the attempt log touches two keys per endpoint, each in a slot of its own, so
    /// one after another it took a round trip per endpoint.
    pub(super) fn req_packed_commands_unordered<'a>(
        &'a mut self,
        pipe: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(self.send(pipe, offset, count, !pipe.is_transaction()))
    }

    async fn send(
        &mut self,
        pipe: &Pipeline,
        offset: usize,
        count: usize,
        at_once: bool,
    ) -> RedisResult<Vec<Value>> {
        let groups = by_slot(pipe);
        if groups.len() <= 1 {
            return self.conn.req_packed_commands(pipe, offset, count).await;
        }
        let mut replies: Vec<Option<Value>> = vec![None; pipe.len()];
        let sends = groups.into_iter().map(|group| {
            let mut conn = self.conn.clone();
            async move {
                let mut sub = Pipeline::with_capacity(group.len());
                if pipe.is_transaction() {
                    sub.atomic();
                }
                for (_, cmd) in &group {
                    sub.add_command((*cmd).clone());
                }
                let got: Vec<Value> = if pipe.is_transaction() {
                    sub.query_async(&mut conn).await?
                } else {
                    conn.req_packed_commands(&sub, 0, sub.len()).await?
                };
                RedisResult::Ok((group, got))
            }
        });
        let answered = if at_once {
            futures_util::future::try_join_all(sends).await?
        } else {
            let mut answered = Vec::new();
            for send in sends {
                answered.push(send.await?);
            }
            answered
        };
        for (group, got) in answered {
            for ((i, _), v) in group.iter().zip(got) {
                replies[*i] = Some(v);
            }
        }
        let replies: Vec<Value> = replies
            .into_iter()
            .map(|v| v.unwrap_or(Value::Nil))
            .collect();
        // A transaction answers with one array (EXEC's), as a single node would.
        Ok(if pipe.is_transaction() {
            vec![Value::Array(replies)]
        } else {
            replies
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipeline_splits_by_the_slot_of_each_commands_key() {
        let mut p = redis::pipe();
        p.cmd("HSET").arg("a{x}").arg("f").arg(1);
        p.cmd("XADD").arg("b{y}").arg("*").arg("f").arg(1);
        p.cmd("ZADD").arg("c{x}").arg(1).arg("m");
        p.cmd("XINFO").arg("GROUPS").arg("b{y}");
        p.cmd("EVALSHA").arg("abc").arg(1).arg("{x}k").arg("arg");
        let groups: Vec<Vec<usize>> = by_slot(&p)
            .into_iter()
            .map(|g| g.into_iter().map(|(i, _)| i).collect())
            .collect();
        assert_eq!(groups, vec![vec![0, 2, 4], vec![1, 3]]);
    }

    #[test]
    fn slots_follow_hash_tags_as_redis_computes_them() {
        // CLUSTER KEYSLOT foo = 12182; {user1000}.following = 3443.
        assert_eq!(Some(Slot::for_key(b"foo")), Slot::new(12182));
        assert_eq!(
            Some(Slot::for_key(b"{user1000}.following")),
            Slot::new(3443)
        );
        let mut p = redis::pipe();
        p.cmd("XREADGROUP")
            .arg("GROUP")
            .arg("g")
            .arg("c")
            .arg("STREAMS")
            .arg("x{user1000}y")
            .arg(">");
        assert_eq!(slot_of(p.cmd_iter().next().unwrap()), Slot::new(3443));
    }
}
