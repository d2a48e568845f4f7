//! A connection for pipelines that need no order between keys of different hash slots.

use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use super::{Backend, Conn};

/// `Conn`, except that on a Redis Cluster a pipeline's commands for different slots are sent
/// all at once instead of one slot after another (each slot's commands stay in order). On one
/// server it is `Conn` itself.
#[derive(Clone)]
pub struct Unordered(pub Conn);

impl ConnectionLike for Unordered {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.0.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipe: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &*self.0 .0 {
            Backend::Cluster(c) => {
                let mut c = c.clone();
                Box::pin(async move { c.req_packed_commands_unordered(pipe, offset, count).await })
            }
            Backend::Node(_) => self.0.req_packed_commands(pipe, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}
