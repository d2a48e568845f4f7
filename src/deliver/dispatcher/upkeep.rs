//! Upkeep of what the dispatcher keeps per endpoint and tenant, run now and then
//! (`app::run`'s `tend_lanes`).

use super::Dispatcher;
use crate::deliver::lanes::LANE_QUIET;

impl Dispatcher {
    /// Drops the lanes of deleted endpoints, and of endpoints quiet for `LANE_QUIET`, and the
    /// idle connections the pool should no longer keep.
    pub(crate) fn prune_lanes(&self) {
        self.lanes.prune(&self.live.snapshot(), LANE_QUIET);
        self.hosts.prune();
        self.tenant_rooms.prune();
        self.client.prune();
    }

    /// Clears the backlog flag of lanes whose endpoint has nothing parked any more (drained
    /// by another replica), so their new deliveries stop queueing behind an empty backlog.
    pub(crate) async fn refresh_backlog_flags(&self) -> redis::RedisResult<()> {
        for chunk in self.lanes.backlogged().chunks(500) {
            let depths = self.park.depths(chunk.iter().map(|(id, _)| &**id)).await?;
            for ((_, lane), depth) in chunk.iter().zip(depths) {
                if depth == 0 {
                    lane.set_backlogged(false);
                }
            }
        }
        Ok(())
    }
}
