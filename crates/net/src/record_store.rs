//! The Kademlia record store, bounded against hostile peers (Kademlia's own
//! `MemoryStore` keeps the first 256 providers of a key and refuses everything once
//! full, so a flood that arrives first locks genuine records out until it expires).
//!
//! - **Records** (name claims and profiles, judged before by [`crate::records`]): at
//!   most [`StoreLimits::max_records`]. When full, a new record evicts the profile
//!   stored or refreshed longest ago (its owner republishes it); name claims are
//!   never evicted (that would hand a handle to the next claimant here), so when
//!   only claims are left a new record is refused.
//! - **Providers** (feed keys only): at most [`StoreLimits::max_providers`] records
//!   in all and [`StoreLimits::max_providers_per_key`] per key, each with at most
//!   [`StoreLimits::max_addresses`] addresses of at most [`MAX_ADDRESS_BYTES`]. A new
//!   or re-announced provider is always stored: when its key is full it replaces the
//!   provider of that key announced longest ago, when the store is full the one
//!   announced longest ago anywhere. A flood therefore never shuts out a follower
//!   that announces after it; to keep one out an attacker must outpace its hourly
//!   re-announcement with fresh peers, each of them rate limited (see `kad.rs`).
//! - Kademlia answers a provider lookup with the first 20 of [`DhtStore::providers`]:
//!   the [`ANSWER_NEWEST`] newest announcements, then a random sample of the rest.
//! - One name claim per key: a newer claim by the same owner for another handle
//!   replaces its old one (a handle change), an older one is refused. One key can
//!   therefore hold at most two records here (its claim and its profile).
//! - Our own records and provider announcements are never evicted.
//! - Expired entries are dropped by [`DhtStore::sweep`], run periodically.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use libp2p::PeerId;
use libp2p::kad::store::{Error, RecordStore, Result};
use libp2p::kad::{ProviderRecord, Record, RecordKey};
use starling_core::records::DhtKey;
use starling_core::{AuthorId, NameClaim};

/// Longest provider address kept, in bytes (`/dns/<253 chars>/tcp/<port>` fits).
pub const MAX_ADDRESS_BYTES: usize = 300;

/// Providers of a key listed first, newest first, in every answer (of 20).
pub const ANSWER_NEWEST: usize = 10;

/// The store's bounds.
#[derive(Debug, Clone, Copy)]
pub struct StoreLimits {
    pub max_records: usize,
    pub max_value_bytes: usize,
    pub max_providers: usize,
    pub max_providers_per_key: usize,
    pub max_addresses: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        Self {
            max_records: 8 * 1024,
            max_value_bytes: crate::protocol::MAX_RECORD_BYTES,
            max_providers: 16 * 1024,
            max_providers_per_key: 64,
            max_addresses: 4,
        }
    }
}

/// What the store did beyond storing, for the counters (taken by the swarm task).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StoreTally {
    pub records_evicted: u64,
    pub records_full: u64,
    pub records_expired: u64,
    pub providers_evicted: u64,
    pub providers_expired: u64,
    pub provider_addresses_dropped: u64,
    /// Claims dropped because their owner claimed another handle since.
    pub claims_replaced: u64,
    /// Claims refused because their owner holds a newer one for another handle.
    pub claims_outdated: u64,
}

pub struct DhtStore {
    local: PeerId,
    limits: StoreLimits,
    /// Each record with its stamp (the order it was stored or refreshed in).
    records: HashMap<RecordKey, (u64, Record)>,
    /// Others' profiles by stamp: the eviction order.
    profile_order: BTreeMap<u64, RecordKey>,
    /// The key of each owner's name claim (one per owner).
    claims: HashMap<AuthorId, RecordKey>,
    providers: HashMap<RecordKey, Vec<(u64, ProviderRecord)>>,
    /// Others' provider records by stamp: the eviction order.
    provider_order: BTreeMap<u64, (RecordKey, PeerId)>,
    /// Our own provider announcements.
    provided: HashSet<ProviderRecord>,
    next_stamp: u64,
    tally: StoreTally,
}

impl DhtStore {
    pub fn new(local: PeerId, limits: StoreLimits) -> Self {
        Self {
            local,
            limits,
            records: HashMap::new(),
            profile_order: BTreeMap::new(),
            claims: HashMap::new(),
            providers: HashMap::new(),
            provider_order: BTreeMap::new(),
            provided: HashSet::new(),
            next_stamp: 0,
            tally: StoreTally::default(),
        }
    }

    fn stamp(&mut self) -> u64 {
        self.next_stamp += 1;
        self.next_stamp
    }

    /// Records held (ours included).
    pub fn record_count(&self) -> usize {
        self.records.len()
    }

    /// Provider records held (ours included).
    pub fn provider_count(&self) -> usize {
        self.providers.values().map(Vec::len).sum()
    }

    /// What happened since the last call.
    pub fn take_tally(&mut self) -> StoreTally {
        std::mem::take(&mut self.tally)
    }

    /// Drops expired records and provider records.
    pub fn sweep(&mut self, now: Instant) {
        let expired: Vec<RecordKey> = self
            .records
            .iter()
            .filter(|(_, (_, r))| r.is_expired(now))
            .map(|(k, _)| k.clone())
            .collect();
        self.tally.records_expired += expired.len() as u64;
        for k in expired {
            self.remove(&k);
        }
        let expired: Vec<(RecordKey, PeerId)> = self
            .providers
            .values()
            .flatten()
            .filter(|(_, p)| p.is_expired(now))
            .map(|(_, p)| (p.key.clone(), p.provider))
            .collect();
        self.tally.providers_expired += expired.len() as u64;
        for (k, p) in expired {
            self.remove_provider(&k, &p);
        }
    }

    /// Takes a record out of the claim index (when it is a claim).
    fn unindex(&mut self, key: &RecordKey, r: &Record) {
        if let Ok(claim) = NameClaim::decode(&r.value)
            && self.claims.get(&claim.owner) == Some(key)
        {
            self.claims.remove(&claim.owner);
        }
    }

    /// One claim per owner: drops the owner's claim for another handle when `claim`
    /// is newer; false when the held one is newer (then `claim` is refused).
    fn make_room_for_claim(&mut self, key: &RecordKey, claim: &NameClaim) -> bool {
        let Some(old_key) = self.claims.get(&claim.owner).cloned() else {
            return true;
        };
        if old_key == *key {
            return true;
        }
        let newer_held = self
            .records
            .get(&old_key)
            .and_then(|(_, r)| NameClaim::decode(&r.value).ok())
            .is_some_and(|held| held.claimed_at > claim.claimed_at);
        if newer_held {
            self.tally.claims_outdated += 1;
            return false;
        }
        self.remove(&old_key);
        self.tally.claims_replaced += 1;
        true
    }

    fn is_ours(&self, r: &Record) -> bool {
        r.publisher == Some(self.local)
    }

    /// Removes one provider record (not ours) by its place in the eviction order.
    fn evict_provider(&mut self, stamp: u64) {
        if let Some((key, peer)) = self.provider_order.remove(&stamp) {
            self.drop_provider(&key, &peer);
            self.tally.providers_evicted += 1;
        }
    }

    fn drop_provider(&mut self, key: &RecordKey, peer: &PeerId) {
        let Some(list) = self.providers.get_mut(key) else {
            return;
        };
        if let Some(i) = list.iter().position(|(_, p)| p.provider == *peer) {
            let (stamp, rec) = list.remove(i);
            self.provider_order.remove(&stamp);
            if rec.provider == self.local {
                self.provided.remove(&rec);
            }
        }
        if list.is_empty() {
            self.providers.remove(key);
        }
    }
}

impl RecordStore for DhtStore {
    type RecordsIter<'a> = std::iter::Map<
        std::collections::hash_map::Values<'a, RecordKey, (u64, Record)>,
        fn(&'a (u64, Record)) -> Cow<'a, Record>,
    >;
    type ProvidedIter<'a> = std::iter::Map<
        std::collections::hash_set::Iter<'a, ProviderRecord>,
        fn(&'a ProviderRecord) -> Cow<'a, ProviderRecord>,
    >;

    fn get(&self, k: &RecordKey) -> Option<Cow<'_, Record>> {
        self.records.get(k).map(|(_, r)| Cow::Borrowed(r))
    }

    fn put(&mut self, r: Record) -> Result<()> {
        if r.value.len() > self.limits.max_value_bytes {
            return Err(Error::ValueTooLarge);
        }
        let kind = DhtKey::parse(r.key.as_ref());
        let is_profile = matches!(kind, DhtKey::Profile(_));
        let claim = match kind {
            DhtKey::Name(_) => NameClaim::decode(&r.value).ok(),
            _ => None,
        };
        if let Some(c) = &claim
            && !self.make_room_for_claim(&r.key, c)
        {
            return Err(Error::MaxRecords);
        }
        let ours = self.is_ours(&r);
        if let Some((old, old_record)) = self.records.remove(&r.key) {
            self.profile_order.remove(&old);
            self.unindex(&r.key, &old_record);
        } else if self.records.len() >= self.limits.max_records {
            match self.profile_order.first_key_value().map(|(s, _)| *s) {
                Some(s) => {
                    let key = self.profile_order.remove(&s).expect("present");
                    self.records.remove(&key);
                    self.tally.records_evicted += 1;
                }
                None => {
                    self.tally.records_full += 1;
                    return Err(Error::MaxRecords);
                }
            }
        }
        let stamp = self.stamp();
        if is_profile && !ours {
            self.profile_order.insert(stamp, r.key.clone());
        }
        if let Some(c) = claim {
            self.claims.insert(c.owner, r.key.clone());
        }
        self.records.insert(r.key.clone(), (stamp, r));
        Ok(())
    }

    fn remove(&mut self, k: &RecordKey) {
        if let Some((stamp, r)) = self.records.remove(k) {
            self.profile_order.remove(&stamp);
            self.unindex(k, &r);
        }
    }

    fn records(&self) -> Self::RecordsIter<'_> {
        self.records.values().map(|(_, r)| Cow::Borrowed(r))
    }

    fn add_provider(&mut self, mut record: ProviderRecord) -> Result<()> {
        let ours = record.provider == self.local;
        let before = record.addresses.len();
        record
            .addresses
            .retain(|a| a.as_ref().len() <= MAX_ADDRESS_BYTES);
        record.addresses.truncate(self.limits.max_addresses);
        self.tally.provider_addresses_dropped += (before - record.addresses.len()) as u64;

        // A re-announcement replaces the provider's record and moves it to the back.
        self.drop_provider(&record.key.clone(), &record.provider);
        let full_key = self
            .providers
            .get(&record.key)
            .is_some_and(|l| l.len() >= self.limits.max_providers_per_key);
        if full_key {
            let oldest = self.providers[&record.key]
                .iter()
                .filter(|(_, p)| p.provider != self.local)
                .map(|(s, _)| *s)
                .min();
            match oldest {
                Some(s) => self.evict_provider(s),
                None => return Err(Error::MaxProvidedKeys),
            }
        }
        if !ours
            && self.provider_order.len() >= self.limits.max_providers
            && let Some(s) = self.provider_order.first_key_value().map(|(s, _)| *s)
        {
            self.evict_provider(s);
        }
        let stamp = self.stamp();
        if ours {
            self.provided.insert(record.clone());
        } else {
            self.provider_order
                .insert(stamp, (record.key.clone(), record.provider));
        }
        self.providers
            .entry(record.key.clone())
            .or_default()
            .push((stamp, record));
        Ok(())
    }

    /// The newest [`ANSWER_NEWEST`] announcements first, then the others in random
    /// order: Kademlia answers with the first 20, so a provider that announced after
    /// a flood is always in the answer, and every other one has its chance in each.
    fn providers(&self, key: &RecordKey) -> Vec<ProviderRecord> {
        let Some(list) = self.providers.get(key) else {
            return Vec::new();
        };
        let mut all: Vec<&(u64, ProviderRecord)> = list.iter().collect();
        all.sort_unstable_by_key(|(stamp, _)| std::cmp::Reverse(*stamp));
        let split = ANSWER_NEWEST.min(all.len());
        fastrand::shuffle(&mut all[split..]);
        all.into_iter().map(|(_, p)| p.clone()).collect()
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        self.provided.iter().map(Cow::Borrowed)
    }

    fn remove_provider(&mut self, key: &RecordKey, provider: &PeerId) {
        self.drop_provider(key, provider);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::Multiaddr;
    use starling_core::Identity;
    use starling_core::records::{feed_key, name_key, profile_key};

    fn peer() -> PeerId {
        PeerId::random()
    }

    fn feed(n: u8) -> RecordKey {
        RecordKey::new(&feed_key(
            &Identity::from_secret_bytes([n.max(1); 32]).author(),
        ))
    }

    fn provider(key: &RecordKey, p: PeerId, addrs: usize) -> ProviderRecord {
        let addresses = (0..addrs)
            .map(|i| {
                format!("/ip4/10.0.0.{}/tcp/{}", i % 250, 1000 + i)
                    .parse::<Multiaddr>()
                    .unwrap()
            })
            .collect();
        ProviderRecord::new(key.clone(), p, addresses)
    }

    fn small() -> StoreLimits {
        StoreLimits {
            max_records: 4,
            max_value_bytes: 1024,
            max_providers: 10,
            max_providers_per_key: 3,
            max_addresses: 2,
        }
    }

    #[test]
    fn a_provider_announced_after_a_flood_is_kept_and_addresses_are_bounded() {
        let mut s = DhtStore::new(peer(), small());
        let alice = feed(1);
        for _ in 0..300 {
            s.add_provider(provider(&alice, peer(), 50)).unwrap();
        }
        let bob = peer();
        s.add_provider(provider(&alice, bob, 50)).unwrap();
        let held = s.providers(&alice);
        assert_eq!(held.len(), 3);
        assert_eq!(held[0].provider, bob);
        assert!(held.iter().all(|p| p.addresses.len() == 2));
        let t = s.take_tally();
        assert_eq!(t.providers_evicted, 298);
        assert_eq!(t.provider_addresses_dropped, 301 * 48);
    }

    #[test]
    fn the_store_holds_at_most_max_providers_and_keeps_ours() {
        let local = peer();
        let mut s = DhtStore::new(local, small());
        let mine = feed(200);
        s.add_provider(provider(&mine, local, 0)).unwrap();
        for i in 0..100u8 {
            s.add_provider(provider(&feed(i), peer(), 1)).unwrap();
        }
        assert_eq!(s.provider_count(), 11);
        assert_eq!(s.provided().count(), 1);
        assert_eq!(s.providers(&mine).len(), 1);
        // A re-announcement refreshes, it does not add.
        let p = peer();
        s.add_provider(provider(&feed(7), p, 1)).unwrap();
        s.add_provider(provider(&feed(7), p, 1)).unwrap();
        assert_eq!(s.provider_count(), 11);
    }

    #[test]
    fn full_store_evicts_the_oldest_profile_and_refuses_new_claims() {
        let mut s = DhtStore::new(peer(), small());
        let ids: Vec<Identity> = (1..=6u8)
            .map(|i| Identity::from_secret_bytes([i; 32]))
            .collect();
        let profile =
            |i: usize| Record::new(RecordKey::new(&profile_key(&ids[i].author())), vec![1]);
        for i in 0..4 {
            s.put(profile(i)).unwrap();
        }
        s.put(profile(4)).unwrap();
        assert_eq!(s.record_count(), 4);
        assert!(s.get(&profile(0).key).is_none());
        let claim = |h: &str| {
            Record::new(
                RecordKey::new(&name_key(&starling_core::Handle::parse(h).unwrap())),
                vec![1],
            )
        };
        for h in ["aaa", "bbb", "ccc", "ddd"] {
            s.put(claim(h)).unwrap();
        }
        assert!(matches!(s.put(claim("eee")), Err(Error::MaxRecords)));
        let t = s.take_tally();
        assert_eq!((t.records_evicted, t.records_full), (5, 1));
    }

    fn claim(id: &Identity, handle: &str, at: u64) -> Record {
        let h = starling_core::Handle::parse(handle).unwrap();
        let c = NameClaim::sign(
            starling_core::NameClaimContent {
                handle: h.clone(),
                owner: id.author(),
                claimed_at: at,
            },
            id,
        )
        .unwrap();
        Record::new(RecordKey::new(&name_key(&h)), c.into_bytes())
    }

    #[test]
    fn one_key_holds_one_claim() {
        let mut s = DhtStore::new(peer(), StoreLimits::default());
        let mallory = Identity::from_secret_bytes([9; 32]);
        for i in 0..100u64 {
            s.put(claim(&mallory, &format!("squat{i}"), 1_000 + i))
                .unwrap();
        }
        assert_eq!(s.record_count(), 1);
        assert!(s.get(&claim(&mallory, "squat99", 0).key).is_some());
        // An older claim for another handle is refused; the held one stays.
        assert!(s.put(claim(&mallory, "late", 5)).is_err());
        assert!(s.get(&claim(&mallory, "squat99", 0).key).is_some());
        // Another key's claim is its own.
        let alice = Identity::from_secret_bytes([1; 32]);
        s.put(claim(&alice, "alice", 1)).unwrap();
        assert_eq!(s.record_count(), 2);
        // Removing a claim frees its owner's slot.
        s.remove(&claim(&mallory, "squat99", 0).key);
        s.put(claim(&mallory, "late", 5)).unwrap();
        assert_eq!(s.record_count(), 2);
        let t = s.take_tally();
        assert_eq!((t.claims_replaced, t.claims_outdated), (99, 1));
    }

    #[test]
    fn sweep_drops_expired_entries() {
        let mut s = DhtStore::new(peer(), small());
        let now = Instant::now();
        let mut r = Record::new(RecordKey::new(&b"/starling/profile/x".to_vec()), vec![1]);
        r.expires = Some(now);
        s.put(r).unwrap();
        let mut p = provider(&feed(1), peer(), 1);
        p.expires = Some(now);
        s.add_provider(p).unwrap();
        s.sweep(now + std::time::Duration::from_secs(1));
        assert_eq!((s.record_count(), s.provider_count()), (0, 0));
        let t = s.take_tally();
        assert_eq!((t.records_expired, t.providers_expired), (1, 1));
    }
}
