//! Gossipsub: feed topics joined and left, posts published, and messages handed to
//! the node, which reports its verdict on each.

use libp2p::PeerId;
use libp2p::gossipsub::{self, MessageAcceptance, MessageId, PublishError};
use starling_core::AuthorId;

use super::EventLoop;
use crate::protocol::{feed_topic, topic_author};
use crate::{NetError, NetEvent};

impl EventLoop {
    pub(super) fn subscribe(&mut self, author: AuthorId) {
        let gs = &mut self.swarm.behaviour_mut().gossipsub;
        if let Err(e) = gs.subscribe(&feed_topic(&author)) {
            tracing::warn!(%author, error = %e, "cannot subscribe");
        }
    }

    pub(super) fn unsubscribe(&mut self, author: AuthorId) {
        let gs = &mut self.swarm.behaviour_mut().gossipsub;
        gs.unsubscribe(&feed_topic(&author));
    }

    /// Publishes on `author`'s topic; returns how many peers subscribe to it.
    pub(super) fn publish(&mut self, author: AuthorId, data: Vec<u8>) -> Result<usize, NetError> {
        let topic = feed_topic(&author);
        let gs = &mut self.swarm.behaviour_mut().gossipsub;
        let peers = gs
            .all_peers()
            .filter(|(_, topics)| topics.contains(&&topic.hash()))
            .count();
        match gs.publish(topic, data) {
            Ok(_) => Ok(peers),
            // Nobody subscribed online: normal; followers pull it later.
            Err(PublishError::NoPeersSubscribedToTopic) | Err(PublishError::Duplicate) => Ok(0),
            Err(e) => Err(NetError::Publish(e.to_string())),
        }
    }

    /// The node's verdict on a message.
    pub(super) fn report(&mut self, id: MessageId, source: PeerId, acceptance: MessageAcceptance) {
        if acceptance == MessageAcceptance::Reject {
            self.counters.add("gossip_rejected");
        }
        self.validated(&id, &source, acceptance);
    }

    fn validated(&mut self, id: &MessageId, source: &PeerId, acceptance: MessageAcceptance) {
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(id, source, acceptance);
    }

    pub(super) fn on_gossip(&mut self, ev: gossipsub::Event) {
        let (propagation_source, message_id, message) = match ev {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => (propagation_source, message_id, message),
            gossipsub::Event::Subscribed { peer_id, topic } if topic == self.own_topic => {
                let (swarm, counters) = (&mut self.swarm, &mut self.counters);
                let slots = self.follower_slots;
                self.connections
                    .admit_follower(swarm, counters, peer_id, &topic, slots);
                return;
            }
            _ => return,
        };
        self.connections.touch(propagation_source);
        let Some(topic_author) = topic_author(message.topic.as_str()) else {
            self.counters.add("gossip_bad_topic");
            self.validated(&message_id, &propagation_source, MessageAcceptance::Reject);
            return;
        };
        let ev = NetEvent::Gossip {
            id: message_id,
            source: propagation_source,
            topic_author,
            data: message.data,
            received_ns: crate::mono_ns(),
        };
        if let Some(NetEvent::Gossip { id, source, .. }) = self.emit(ev) {
            // The node is overloaded: neither forward nor penalise.
            self.validated(&id, &source, MessageAcceptance::Ignore);
        }
    }
}
