//! Our DHT queries, each waiting in a map keyed by its query id until Kademlia
//! reports its result: record lookups, PUTs and provider announcements, provider
//! lookups, and peer lookups.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use libp2p::kad::{
    self, GetClosestPeersOk, GetProvidersOk, GetRecordOk, QueryId, QueryResult, Quorum, Record,
    RecordKey,
};
use libp2p::{Multiaddr, PeerId, Swarm};

use super::Counters;
use crate::behaviour::Behaviour;
use crate::records;
use crate::{Answer, GetMode, MAX_ANSWERS, NetError, Reply};

struct PendingGet {
    key: Vec<u8>,
    mode: GetMode,
    found: Vec<Answer>,
    reply: Reply<Vec<Answer>>,
}

/// A peer lookup, with the callers waiting for its addresses (none when only
/// requests wait for it, see `Requests::on_lookup`).
struct PendingFind {
    peer: PeerId,
    callers: Vec<Reply<Vec<Multiaddr>>>,
}

#[derive(Default)]
pub(super) struct Queries {
    gets: HashMap<QueryId, PendingGet>,
    /// PUTs and provider announcements, answered when acknowledged.
    acks: HashMap<QueryId, Reply<()>>,
    providers: HashMap<QueryId, (HashSet<PeerId>, Reply<Vec<PeerId>>)>,
    finds: HashMap<QueryId, PendingFind>,
}

type Kad = kad::Behaviour<crate::record_store::DhtStore>;

impl Queries {
    pub(super) fn get_record(
        &mut self,
        kad: &mut Kad,
        key: Vec<u8>,
        mode: GetMode,
        reply: Reply<Vec<Answer>>,
    ) {
        let id = kad.get_record(RecordKey::new(&key));
        let found = Vec::new();
        self.gets.insert(
            id,
            PendingGet {
                key,
                mode,
                found,
                reply,
            },
        );
    }

    pub(super) fn put_record(
        &mut self,
        kad: &mut Kad,
        key: Vec<u8>,
        value: Vec<u8>,
        reply: Reply<()>,
    ) {
        let mut record = Record::new(RecordKey::new(&key), value);
        record.expires = Some(Instant::now() + records::ttl(&key));
        self.await_ack(kad.put_record(record, Quorum::One), reply);
    }

    pub(super) fn start_providing(&mut self, kad: &mut Kad, key: Vec<u8>, reply: Reply<()>) {
        self.await_ack(kad.start_providing(RecordKey::new(&key)), reply);
    }

    fn await_ack<E: std::fmt::Debug>(&mut self, started: Result<QueryId, E>, reply: Reply<()>) {
        match started {
            Ok(id) => {
                self.acks.insert(id, reply);
            }
            Err(e) => {
                let _ = reply.send(Err(NetError::Query(format!("{e:?}"))));
            }
        }
    }

    pub(super) fn providers(&mut self, kad: &mut Kad, key: Vec<u8>, reply: Reply<Vec<PeerId>>) {
        let id = kad.get_providers(RecordKey::new(&key));
        self.providers.insert(id, (HashSet::new(), reply));
    }

    /// Looks `peer` up, joining the lookup already running for it if any; `caller`
    /// gets its addresses.
    pub(super) fn find_peer(
        &mut self,
        kad: &mut Kad,
        peer: PeerId,
        caller: Option<Reply<Vec<Multiaddr>>>,
    ) {
        if let Some(find) = self.finds.values_mut().find(|f| f.peer == peer) {
            find.callers.extend(caller);
            return;
        }
        // The peer is its own closest key: the lookup can end as soon as it answers
        // (which connects us to it), not after the 20 closest peers have.
        let id = kad.get_n_closest_peers(peer, std::num::NonZeroUsize::MIN);
        let callers = caller.into_iter().collect();
        self.finds.insert(id, PendingFind { peer, callers });
    }

    /// Takes a step of one of our queries. When it ends a peer lookup, returns the
    /// peer and the addresses found (empty: not found), already added to the swarm.
    pub(super) fn on_result(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        counters: &mut Counters,
        id: QueryId,
        result: QueryResult,
        last: bool,
    ) -> Option<(PeerId, Vec<Multiaddr>)> {
        match result {
            QueryResult::GetRecord(res) => self.on_get(swarm, counters, id, res, last),
            QueryResult::PutRecord(res) => self.on_ack(id, res.map(|_| ())),
            QueryResult::StartProviding(res) => self.on_ack(id, res.map(|_| ())),
            QueryResult::GetProviders(res) => self.on_providers(swarm, id, res, last),
            QueryResult::GetClosestPeers(res) => return self.on_closest(swarm, id, res, last),
            _ => {}
        }
        None
    }

    fn on_get(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        counters: &mut Counters,
        id: QueryId,
        res: kad::GetRecordResult,
        last: bool,
    ) {
        let Some(mut pending) = self.gets.remove(&id) else {
            return;
        };
        let mut done = last;
        match res {
            Ok(GetRecordOk::FoundRecord(peer_record)) => {
                let from = peer_record.peer;
                let value = peer_record.record.value;
                if records::is_valid(&pending.key, &value) {
                    if pending.mode == GetMode::First {
                        pending.found.push(Answer { from, value });
                        done = true;
                        finish(swarm, id);
                    } else if pending.found.len() < MAX_ANSWERS
                        && !pending.found.iter().any(|a| a.from == from)
                    {
                        pending.found.push(Answer { from, value });
                    }
                } else {
                    counters.add("records_invalid");
                }
            }
            Ok(GetRecordOk::FinishedWithNoAdditionalRecord { .. }) => done = true,
            Err(kad::GetRecordError::Timeout { .. })
                if pending.found.is_empty() && pending.mode == GetMode::First =>
            {
                let _ = pending.reply.send(Err(NetError::Query("timed out".into())));
                return;
            }
            Err(_) => done = true,
        }
        if done {
            let _ = pending.reply.send(Ok(pending.found));
        } else {
            self.gets.insert(id, pending);
        }
    }

    fn on_ack<E: std::fmt::Display>(&mut self, id: QueryId, res: Result<(), E>) {
        if let Some(reply) = self.acks.remove(&id) {
            let _ = reply.send(res.map_err(|e| NetError::Query(e.to_string())));
        }
    }

    fn on_providers(
        &mut self,
        swarm: &Swarm<Behaviour>,
        id: QueryId,
        res: kad::GetProvidersResult,
        last: bool,
    ) {
        let Some((mut found, reply)) = self.providers.remove(&id) else {
            return;
        };
        let mut done = last;
        match res {
            Ok(GetProvidersOk::FoundProviders { providers, .. }) => found.extend(providers),
            Ok(GetProvidersOk::FinishedWithNoAdditionalRecord { .. }) => done = true,
            Err(_) => done = true,
        }
        if done {
            found.remove(swarm.local_peer_id());
            let _ = reply.send(Ok(found.into_iter().collect()));
        } else {
            self.providers.insert(id, (found, reply));
        }
    }

    /// A lookup ends as soon as it finds the peer with addresses, or at its last step.
    fn on_closest(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        id: QueryId,
        res: kad::GetClosestPeersResult,
        last: bool,
    ) -> Option<(PeerId, Vec<Multiaddr>)> {
        let target = self.finds.get(&id)?.peer;
        let peers = match res {
            Ok(GetClosestPeersOk { peers, .. }) => peers,
            Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
        };
        let addrs = peers
            .into_iter()
            .find(|p| p.peer_id == target)
            .map(|p| p.addrs)
            .unwrap_or_default();
        if addrs.is_empty() && !last {
            return None;
        }
        let PendingFind { peer, callers } = self.finds.remove(&id)?;
        for a in &addrs {
            swarm.add_peer_address(peer, a.clone());
        }
        for reply in callers {
            let _ = reply.send(if addrs.is_empty() {
                Err(NetError::Unreachable(peer))
            } else {
                Ok(addrs.clone())
            });
        }
        finish(swarm, id);
        Some((peer, addrs))
    }
}

/// Stops a query that has what it needs.
fn finish(swarm: &mut Swarm<Behaviour>, id: QueryId) {
    if let Some(mut q) = swarm.behaviour_mut().kad.query_mut(&id) {
        q.finish();
    }
}
