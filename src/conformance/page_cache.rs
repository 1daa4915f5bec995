//! The [`PageCache`] conformance suite.
//!
//! | check | what must hold |
//! |---|---|
//! | [`get_insert_remove`] | a page reads back as inserted (the newest insert wins), `remove` drops it, and the counters move |
//! | [`stays_within_budget`] | inserting far more than the capacity keeps the bytes held within it, and what is returned is always the exact page |
//! | [`disabled_when_empty`] | a zero-capacity cache holds nothing |

use bytes::Bytes;

use crate::page_cache::{PageCache, PageKey};
use crate::types::WalId;

fn key(wal: u128, page: u64) -> PageKey {
    PageKey {
        wal: WalId(uuid::Uuid::from_u128(wal)),
        page,
    }
}

fn page(seed: u8, len: usize) -> Bytes {
    Bytes::from((0..len).map(|i| (i as u8) ^ seed).collect::<Vec<_>>())
}

/// Pages read back as inserted; remove drops them; counters move.
pub async fn get_insert_remove(cache: &dyn PageCache, page_size: usize) {
    let before = cache.stats();
    let k = key(1, 0);
    assert_eq!(cache.get(&k).await, None);
    cache.insert(k, page(1, page_size)).await;
    assert_eq!(cache.get(&k).await, Some(page(1, page_size)));
    cache.insert(k, page(2, page_size / 2)).await;
    assert_eq!(
        cache.get(&k).await,
        Some(page(2, page_size / 2)),
        "the newest insert wins"
    );
    let fast = cache.try_get(&k);
    assert!(
        fast.is_none() || fast == Some(page(2, page_size / 2)),
        "try_get answers what get would: {fast:?}"
    );
    cache.remove(&k).await;
    assert_eq!(cache.get(&k).await, None);
    assert_eq!(cache.try_get(&k), None, "try_get after remove");
    let after = cache.stats();
    assert!(after.hits >= before.hits + 2, "{before:?} -> {after:?}");
    assert!(after.misses >= before.misses + 2, "{before:?} -> {after:?}");
    assert!(
        after.inserts >= before.inserts + 2,
        "{before:?} -> {after:?}"
    );
}

/// The bytes held stay within the capacity; pages returned are exact.
pub async fn stays_within_budget(cache: &dyn PageCache, page_size: usize) {
    let capacity = cache.capacity();
    let n = (capacity as usize / page_size.max(1)) * 4 + 8;
    for i in 0..n {
        cache
            .insert(key(2, i as u64), page(i as u8, page_size))
            .await;
        assert!(
            cache.stats().bytes <= capacity,
            "{} bytes held, capacity {capacity}",
            cache.stats().bytes
        );
    }
    for i in 0..n {
        if let Some(p) = cache.get(&key(2, i as u64)).await {
            assert_eq!(p, page(i as u8, page_size), "page {i} came back changed");
        }
    }
}

/// A zero-capacity cache holds nothing.
pub async fn disabled_when_empty(cache: &dyn PageCache) {
    assert_eq!(cache.capacity(), 0);
    cache.insert(key(3, 0), page(3, 100)).await;
    assert_eq!(cache.get(&key(3, 0)).await, None);
}
