//! Kademlia: what others ask us to store (judged by [`crate::records`]) and the steps
//! of our own queries (resolved by [`super::queries`]).

use std::collections::HashMap;
use std::time::Instant;

use libp2p::PeerId;
use libp2p::kad::{self, QueryResult, Record};

use super::{EventLoop, unix_ms};
use crate::NetEvent;
use crate::records::{self, Verdict};

/// Inbound DHT writes (PUTs and provider announcements) one peer may make at once...
const WRITE_BURST: f64 = 512.0;
/// ...and per second after that. A node announces each feed it follows to ~20 nodes
/// once an hour, and republishes the records it holds hourly: bursts, rare.
const WRITES_PER_SEC: f64 = 16.0;
/// Peers whose write budget is remembered: more than the connections we accept, and
/// only a connected peer can write, so forgetting one never refills a live flooder.
const BUDGET_PEERS: usize = 1024;

/// A token bucket of inbound DHT writes per peer (bounded, least recently used out).
#[derive(Default)]
pub(super) struct WriteBudget {
    peers: HashMap<PeerId, (f64, Instant)>,
}

impl WriteBudget {
    /// Takes one write from `peer`'s budget; false when it has none left.
    fn take(&mut self, peer: PeerId, now: Instant) -> bool {
        if !self.peers.contains_key(&peer) && self.peers.len() >= BUDGET_PEERS {
            let oldest = self
                .peers
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(p, _)| *p);
            if let Some(p) = oldest {
                self.peers.remove(&p);
            }
        }
        let (tokens, last) = self.peers.entry(peer).or_insert((WRITE_BURST, now));
        *tokens = (*tokens + now.saturating_duration_since(*last).as_secs_f64() * WRITES_PER_SEC)
            .min(WRITE_BURST);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl EventLoop {
    pub(super) fn on_kad(&mut self, ev: kad::Event) {
        match ev {
            kad::Event::InboundRequest { request } => self.on_kad_inbound(request),
            kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            } => {
                if step.last {
                    self.counters.add(query_kind(&result));
                }
                let (swarm, counters) = (&mut self.swarm, &mut self.counters);
                if let Some((peer, addrs)) = self
                    .queries
                    .on_result(swarm, counters, id, result, step.last)
                {
                    self.requests.on_lookup(swarm, peer, &addrs);
                }
            }
            _ => {}
        }
    }

    fn on_kad_inbound(&mut self, request: kad::InboundRequest) {
        self.counters.add(match &request {
            kad::InboundRequest::FindNode { .. } => "kad_in.find_node",
            kad::InboundRequest::GetProvider { .. } => "kad_in.get_providers",
            kad::InboundRequest::AddProvider { .. } => "kad_in.add_provider",
            kad::InboundRequest::GetRecord { .. } => "kad_in.get_record",
            kad::InboundRequest::PutRecord { .. } => "kad_in.put_record",
        });
        match request {
            kad::InboundRequest::PutRecord {
                source,
                record: Some(record),
                ..
            } => {
                if self.write_budget.take(source, Instant::now()) {
                    self.store_for(source, record);
                } else {
                    self.counters.add("dht_writes_throttled");
                }
            }
            kad::InboundRequest::AddProvider {
                record: Some(record),
            } => {
                // Kademlia accepts a provider record only from the provider itself.
                if !self.write_budget.take(record.provider, Instant::now()) {
                    self.counters.add("dht_writes_throttled");
                    return;
                }
                let stored = records::is_provided_key(record.key.as_ref()) && {
                    let store = self.swarm.behaviour_mut().kad.store_mut();
                    kad::store::RecordStore::add_provider(store, record).is_ok()
                };
                if !stored {
                    self.counters.add("providers_refused");
                }
            }
            _ => {}
        }
        self.tally_store();
    }

    /// Drops expired DHT entries (every housekeeping tick) and counts what the store
    /// evicted, expired or trimmed.
    pub(super) fn sweep_store(&mut self) {
        let store = self.swarm.behaviour_mut().kad.store_mut();
        store.sweep(Instant::now());
        self.tally_store();
    }

    fn tally_store(&mut self) {
        let t = self.swarm.behaviour_mut().kad.store_mut().take_tally();
        self.counters.add_n("records_evicted", t.records_evicted);
        self.counters.add_n("records_full", t.records_full);
        self.counters.add_n("records_expired", t.records_expired);
        self.counters
            .add_n("providers_evicted", t.providers_evicted);
        self.counters
            .add_n("providers_expired", t.providers_expired);
        self.counters
            .add_n("provider_addresses_dropped", t.provider_addresses_dropped);
        self.counters.add_n("claims_replaced", t.claims_replaced);
        self.counters.add_n("claims_outdated", t.claims_outdated);
    }

    /// Stores a record `source` asks us to keep, if it passes `judge_put`, and hands
    /// it to the node to persist (unless we held these very bytes already).
    fn store_for(&mut self, source: PeerId, mut record: Record) {
        let local = *self.swarm.local_peer_id();
        let store = self.swarm.behaviour_mut().kad.store_mut();
        let existing = kad::store::RecordStore::get(store, &record.key).map(|r| r.value.clone());
        if let Verdict::Refuse(why) = records::judge_put(
            record.key.as_ref(),
            &record.value,
            existing.as_deref(),
            unix_ms(),
        ) {
            tracing::debug!(%source, reason = why, "refused a DHT record");
            self.counters.add("records_refused");
            return;
        }
        let longest = records::ttl(record.key.as_ref());
        let ttl = record
            .expires
            .map(|e| e.saturating_duration_since(Instant::now()))
            .unwrap_or(longest)
            .min(longest);
        record.expires = Some(Instant::now() + ttl);
        // Only our own records are kept from eviction: nobody else may claim to be us.
        if record.publisher == Some(local) {
            record.publisher = Some(source);
        }
        let unchanged = existing.as_deref() == Some(&record.value[..]);
        let (key, value) = (record.key.to_vec(), record.value.clone());
        match kad::store::RecordStore::put(store, record) {
            Ok(()) if unchanged => {}
            Ok(()) => {
                let expires = unix_ms() + ttl.as_millis() as u64;
                let _ = self.emit(NetEvent::RecordStored {
                    key,
                    value,
                    expires,
                });
            }
            Err(e) => {
                tracing::debug!(error = ?e, "record not stored");
                self.counters.add("records_refused");
            }
        }
    }
}

fn query_kind(result: &QueryResult) -> &'static str {
    match result {
        QueryResult::Bootstrap(_) => "kad_query.bootstrap",
        QueryResult::GetClosestPeers(_) => "kad_query.closest_peers",
        QueryResult::GetProviders(_) => "kad_query.get_providers",
        QueryResult::StartProviding(_) => "kad_query.start_providing",
        QueryResult::RepublishProvider(_) => "kad_query.republish_provider",
        QueryResult::GetRecord(_) => "kad_query.get_record",
        QueryResult::PutRecord(_) => "kad_query.put_record",
        QueryResult::RepublishRecord(_) => "kad_query.republish_record",
    }
}
