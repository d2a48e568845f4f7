//! Deliveries whose endpoint this replica's index does not have as Redis does: not loaded
//! yet, deleted, or enabled since the index was refreshed.

use super::Dispatcher;
use crate::deliver::decide::Why;
use crate::deliver::delivery::Delivery;

impl Dispatcher {
    /// Whether Redis holds the endpoint as enabled (a Redis error counts as not).
    pub(super) async fn enabled_in_store(&self, id: &str) -> bool {
        matches!(self.store.get(id).await, Ok(Some(rec)) if !rec.disabled)
    }

    /// An endpoint not in this replica's index: gone only if Redis agrees; otherwise (a
    /// record this replica has not loaded yet, or cannot decode) the delivery is parked.
    pub(super) async fn endpoint_missing(&self, d: Delivery) -> bool {
        match self.store.get(&d.endpoint_id).await {
            Ok(None) => self.settled(&d).await,
            Ok(Some(_)) => {
                let lane = self.lane(d.endpoint_id.as_arc());
                self.park(d, &lane, Why::UnknownEndpoint).await
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell whether an endpoint exists; keeping its delivery");
                false
            }
        }
    }
}
