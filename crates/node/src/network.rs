//! Wiring the node to the network: the event loop that dispatches [`NetEvent`]s,
//! and the periodic maintenance (announcements, follower discovery, reconnection).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use starling_core::AuthorId;
use starling_core::records::feed_key;
use starling_net::NetEvent;
use tokio::sync::mpsc;

use crate::gossip::GossipMsg;
use crate::node::{Node, NodeError};
use crate::view::NetworkStatus;

/// Gossip messages validated together (one batch verification, one transaction).
const GOSSIP_BATCH: usize = 256;
/// Followed authors reconnected to per maintenance round.
const RECONNECT_PER_ROUND: usize = 16;

impl Node {
    pub(crate) async fn start_network(&self, events: mpsc::Receiver<NetEvent>) {
        let Some(net) = self.inner.net.clone() else {
            return;
        };
        let _ = net.subscribe(self.inner.me).await;
        let followees: Vec<AuthorId> = self
            .inner
            .following
            .read()
            .expect("following poisoned")
            .iter()
            .copied()
            .collect();
        for a in followees {
            let _ = net.subscribe(a).await;
        }
        let node = self.clone();
        self.spawn(async move { node.run_events(events).await });
        let node = self.clone();
        self.spawn(async move { node.run_outbox().await });
        let node = self.clone();
        self.spawn(async move { node.run_registration().await });
        let node = self.clone();
        self.spawn(async move { node.run_maintenance().await });
    }

    async fn run_events(&self, mut events: mpsc::Receiver<NetEvent>) {
        let mut backlog: VecDeque<NetEvent> = VecDeque::new();
        loop {
            let ev = match backlog.pop_front() {
                Some(ev) => ev,
                None => match events.recv().await {
                    Some(ev) => ev,
                    None => return,
                },
            };
            match ev {
                NetEvent::Gossip {
                    id,
                    source,
                    topic_author,
                    data,
                } => {
                    let mut batch = vec![GossipMsg {
                        id,
                        source,
                        topic_author,
                        data,
                    }];
                    // Take whatever else is queued, up to a batch; keep the rest in order.
                    while batch.len() < GOSSIP_BATCH {
                        match events.try_recv() {
                            Ok(NetEvent::Gossip {
                                id,
                                source,
                                topic_author,
                                data,
                            }) => batch.push(GossipMsg {
                                id,
                                source,
                                topic_author,
                                data,
                            }),
                            Ok(other) => {
                                backlog.push_back(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.ingest_gossip(batch).await;
                }
                NetEvent::SyncRequest {
                    peer,
                    request,
                    channel,
                } => {
                    let node = self.clone();
                    self.spawn(async move { node.serve_sync(peer, request, channel).await });
                }
                NetEvent::SocialRequest {
                    peer,
                    request,
                    channel,
                } => {
                    let node = self.clone();
                    self.spawn(async move { node.serve_social(peer, request, channel).await });
                }
                NetEvent::RecordStored {
                    key,
                    value,
                    expires,
                } => {
                    if let Err(e) = self.inner.store.put_dht_record(key, value, expires).await {
                        tracing::warn!(error = %e, "cannot persist a DHT record");
                    }
                }
                NetEvent::Connected { peer } => self.on_connected(peer).await,
                NetEvent::Disconnected { .. } => {}
            }
        }
    }

    async fn on_connected(&self, peer: starling_net::PeerId) {
        self.inner.connected_kick.notify_waiters();
        // Our first peer: announce ourselves and catch up on everything.
        let first = !self.inner.announced.swap(true, Ordering::SeqCst);
        if first {
            let node = self.clone();
            self.spawn(async move { node.announce_and_catch_up().await });
        }
        let Ok(key) = AuthorId::from_peer_id(&peer) else {
            return;
        };
        if self.is_following(&key) {
            // A followed author came (back) online: catch up from them, and deliver
            // any statement still waiting for them.
            self.spawn_catch_up(key, Some(peer));
        }
        if self
            .inner
            .store
            .outbox_retry_now(key)
            .await
            .unwrap_or(false)
        {
            self.inner.outbox_kick.notify_one();
        }
    }

    /// After joining: provide the feeds we follow, publish our profile, learn of
    /// followers, and catch up on every followed author.
    async fn announce_and_catch_up(&self) {
        let Some(net) = self.inner.net.clone() else {
            return;
        };
        let followees: Vec<AuthorId> = self
            .inner
            .following
            .read()
            .expect("following poisoned")
            .iter()
            .copied()
            .collect();
        let catch_up = futures::future::join_all(followees.iter().map(|a| self.catch_up(*a, None)));
        let provide = async {
            for a in &followees {
                if let Err(e) = net.start_providing(feed_key(a)).await {
                    tracing::debug!(author = %a, error = %e, "provider record not announced");
                }
            }
        };
        futures::join!(
            catch_up,
            provide,
            self.publish_profile(),
            self.discover_followers()
        );
    }

    async fn run_maintenance(&self) {
        let every = self.inner.config.maintenance_interval;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let mut round = 0usize;
        loop {
            tick.tick().await;
            round += 1;
            // Idle connections are closed by now; give their memory back.
            crate::sysmem::release_free_memory();
            let head = self.inner.head_seq.load(Ordering::SeqCst);
            if self.inner.published_head.load(Ordering::SeqCst) != head {
                self.publish_profile().await;
            }
            self.discover_followers().await;
            // Reconnect to (and catch up with) a few followed authors we lack a
            // connection to, round robin.
            let Some(net) = self.inner.net.clone() else {
                return;
            };
            let followees: Vec<AuthorId> = self
                .inner
                .following
                .read()
                .expect("following poisoned")
                .iter()
                .copied()
                .collect();
            let n = followees.len().max(1);
            let start = (round * RECONNECT_PER_ROUND) % n;
            for a in followees
                .iter()
                .cycle()
                .skip(start)
                .take(RECONNECT_PER_ROUND.min(followees.len()))
            {
                if !net.is_connected(a.peer_id()).await.unwrap_or(true) {
                    self.spawn_catch_up(*a, None);
                }
            }
        }
    }

    pub(crate) async fn network_status(&self) -> Result<NetworkStatus, NodeError> {
        let net = self
            .inner
            .net
            .clone()
            .ok_or_else(|| NodeError::Network("off".into()))?;
        let st = net.status().await?;
        Ok(NetworkStatus {
            listen_addrs: st.listen_addrs.iter().map(|a| a.to_string()).collect(),
            connected_peers: st.connected_peers.len(),
            peers: st.connected_peers.iter().map(|p| p.to_string()).collect(),
            routing_table_size: st.routing_table_size,
            subscribed_topics: st.subscribed_topics,
            dht_queries: st.dht_queries,
            counters: st.counters,
        })
    }
}
