//! Kademlia: what others ask us to store (judged by [`crate::records`]) and the steps
//! of our own queries (resolved by [`super::queries`]).

use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::kad::{self, QueryResult, Record};

use super::{EventLoop, unix_ms};
use crate::NetEvent;
use crate::records::{self, Verdict};

/// How long we keep a record stored for someone else.
const RECORD_TTL: Duration = Duration::from_secs(36 * 3600);

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
            } => self.store_for(source, record),
            kad::InboundRequest::AddProvider {
                record: Some(record),
            } => {
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
    }

    /// Stores a record `source` asks us to keep, if it passes `judge_put`, and hands
    /// it to the node to persist.
    fn store_for(&mut self, source: PeerId, mut record: Record) {
        let store = self.swarm.behaviour_mut().kad.store_mut();
        let existing = kad::store::RecordStore::get(store, &record.key).map(|r| r.value.clone());
        if let Verdict::Refuse(why) =
            records::judge_put(record.key.as_ref(), &record.value, existing.as_deref())
        {
            tracing::debug!(%source, reason = why, "refused a DHT record");
            self.counters.add("records_refused");
            return;
        }
        let ttl = record
            .expires
            .map(|e| e.saturating_duration_since(Instant::now()))
            .unwrap_or(RECORD_TTL)
            .min(RECORD_TTL);
        record.expires = Some(Instant::now() + ttl);
        let (key, value) = (record.key.to_vec(), record.value.clone());
        match kad::store::RecordStore::put(store, record) {
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
