//! Ids made on the request path: UUIDv7 from a per-thread generator seeded once from the
//! OS, where `Uuid::now_v7` asks the kernel for random bytes on every call (a system call
//! per request, measured as the largest single cost of the audit layer).

use std::cell::RefCell;

use rand::{Rng as _, SeedableRng as _, rngs::SmallRng};

thread_local! {
    static RNG: RefCell<SmallRng> = RefCell::new(SmallRng::seed_from_u64(seed()));
}

fn seed() -> u64 {
    // Without the OS's generator, the time and the thread still make seeds differ.
    getrandom::u64().unwrap_or_else(|_| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let thread = std::thread::current().id();
        nanos ^ (std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), thread))
    })
}

/// A new UUIDv7: the current millisecond and 74 random bits. Ids only need to be unique
/// (the server dedupes on them), not unpredictable.
pub fn new_v7() -> uuid::Uuid {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let random: [u8; 10] = RNG.with(|rng| rng.borrow_mut().random());
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_version_7_distinct_and_ordered_by_millisecond() {
        let ids: Vec<uuid::Uuid> = (0..10_000).map(|_| super::new_v7()).collect();
        assert!(ids.iter().all(|id| id.get_version_num() == 7));
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        let millis = |id: &uuid::Uuid| id.get_timestamp().unwrap().to_unix();
        assert!(ids.windows(2).all(|w| millis(&w[0]) <= millis(&w[1])));
    }
}
