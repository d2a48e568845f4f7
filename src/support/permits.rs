//! Room handed out one permit at a time from a chunk taken at once: the consumer waits for
//! room once per batch, not once per delivery (every release would otherwise wake it).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One permit off `spare`, which keeps the rest.
pub(crate) fn take_one(spare: &mut Option<OwnedSemaphorePermit>) -> Option<OwnedSemaphorePermit> {
    match spare {
        Some(s) if s.num_permits() > 1 => s.split(1),
        _ => spare.take(),
    }
}

/// One permit off `spare`, else off `room` at once, else after waiting for `want` of them at
/// once (the rest kept in `spare`).
pub(crate) async fn next_permit(
    room: &Arc<Semaphore>,
    spare: &mut Option<OwnedSemaphorePermit>,
    want: usize,
) -> OwnedSemaphorePermit {
    if let Some(p) = take_one(spare).or_else(|| room.clone().try_acquire_owned().ok()) {
        return p;
    }
    let chunk = room.clone().acquire_many_owned(want.max(1) as u32).await;
    *spare = Some(chunk.expect("never closed"));
    take_one(spare).expect("at least one permit")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_chunk_of_room_is_handed_out_one_permit_at_a_time() {
        let room = Arc::new(Semaphore::new(5));
        let mut spare = Some(room.clone().acquire_many_owned(3).await.unwrap());
        let taken: Vec<_> = (0..3).map(|_| take_one(&mut spare).unwrap()).collect();
        assert!(taken.iter().all(|p| p.num_permits() == 1));
        assert!(spare.is_none(), "the chunk is used up");
        assert!(take_one(&mut spare).is_none());
        assert_eq!(room.available_permits(), 2);
        drop(taken);
        assert_eq!(
            room.available_permits(),
            5,
            "each delivery gives its own back"
        );
    }
}
