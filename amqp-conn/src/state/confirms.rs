//! Publisher confirms: sequence numbers per channel, single and multiple
//! acks and nacks, and returns matched to their publish.
//!
//! RabbitMQ numbers the publishes of a channel in confirm mode from 1 and
//! answers each with `basic.ack` or `basic.nack` (possibly `multiple`,
//! covering every earlier one). A mandatory message that cannot be routed
//! comes back as `basic.return` *before* the ack that covers it; returns
//! carry no sequence number, so a return is matched to the earliest
//! unconfirmed mandatory publish with the same exchange and routing key
//! when the next ack covering it arrives.

use std::collections::VecDeque;

use amqp_wire::{BasicPublish, ShortString};
use tokio::sync::oneshot;

use crate::error::Error;
use crate::message::{Confirmation, ReturnedMessage};

/// One publish waiting for its confirm.
#[derive(Debug)]
struct Pending {
    seq: u64,
    /// The exchange it went to: a close that names it refused it; a
    /// return with it and the routing key belongs to it if it is
    /// mandatory; a nack names both.
    exchange: ShortString,
    routing_key: ShortString,
    mandatory: bool,
    reply: Option<oneshot::Sender<Confirmation>>,
}

/// The confirm state of one channel.
#[derive(Debug, Default)]
pub(crate) struct ConfirmTracker {
    next_seq: u64,
    /// Unconfirmed publishes in sequence order.
    pending: VecDeque<Pending>,
    /// Returns waiting for the ack of their publish.
    returns: VecDeque<ReturnedMessage>,
}

fn resolve(reply: Option<oneshot::Sender<Confirmation>>, outcome: Confirmation) {
    if let Some(reply) = reply {
        // The publisher may have stopped waiting; that is its choice.
        let _ = reply.send(outcome);
    }
}

impl ConfirmTracker {
    pub(crate) fn new() -> Self {
        ConfirmTracker {
            next_seq: 1,
            ..Default::default()
        }
    }

    /// Number of unconfirmed publishes.
    pub(crate) fn unconfirmed(&self) -> usize {
        self.pending.len()
    }

    /// Records a publish (its exchange and routing key are moved here once
    /// the publish is encoded: no copy); returns its sequence number.
    pub(crate) fn publish(
        &mut self,
        publish: BasicPublish,
        reply: Option<oneshot::Sender<Confirmation>>,
    ) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.push_back(Pending {
            seq,
            exchange: publish.exchange,
            routing_key: publish.routing_key,
            mandatory: publish.mandatory,
            reply,
        });
        seq
    }

    /// Holds a return until the ack for its publish arrives.
    pub(crate) fn on_return(&mut self, returned: ReturnedMessage) {
        self.returns.push_back(returned);
    }

    /// Handles `basic.ack` (`nack == false`) or `basic.nack`.
    pub(crate) fn on_confirm(&mut self, tag: u64, multiple: bool, nack: bool) {
        if multiple {
            // Everything up to `tag` is at the front: no search.
            while let Some(pending) = self.pending.pop_front_if(|p| p.seq <= tag) {
                self.resolve_pending(pending, nack);
            }
        } else if let Some(index) = self.index_of(tag) {
            if let Some(pending) = self.pending.remove(index) {
                self.resolve_pending(pending, nack);
            }
        }
        // Otherwise an unknown or repeated tag: nothing waits for it.
    }

    /// Where the publish numbered `tag` waits. Confirms mostly come in
    /// order, so the place it has when no publish before it was
    /// confirmed out of order (the front, for the first) is looked at
    /// before a search.
    fn index_of(&self, tag: u64) -> Option<usize> {
        let first = self.pending.front()?.seq;
        let guess = usize::try_from(tag.checked_sub(first)?).ok()?;
        if self.pending.get(guess).is_some_and(|p| p.seq == tag) {
            return Some(guess);
        }
        self.pending.binary_search_by_key(&tag, |p| p.seq).ok()
    }

    fn resolve_pending(&mut self, pending: Pending, nack: bool) {
        let outcome = match (nack, self.take_return_for(&pending)) {
            (false, Some(returned)) => Confirmation::Returned(Box::new(returned)),
            (false, None) => Confirmation::Ack,
            (true, _) => Confirmation::Nack {
                exchange: pending.exchange,
                routing_key: pending.routing_key,
            },
        };
        resolve(pending.reply, outcome);
    }

    fn take_return_for(&mut self, pending: &Pending) -> Option<ReturnedMessage> {
        if !pending.mandatory || self.returns.is_empty() {
            return None;
        }
        let index = self
            .returns
            .iter()
            .position(|r| r.exchange == pending.exchange && r.routing_key == pending.routing_key)?;
        self.returns.remove(index)
    }

    /// The channel or connection closed: every unconfirmed publish ends
    /// as indeterminate, except those the close says the broker refused
    /// (a close in reply to `basic.publish` that names their exchange,
    /// such as 404 "no exchange 'x'" or 403 "access to exchange 'x'").
    pub(crate) fn fail_all(&mut self, error: &Error) {
        let refused = refused_exchange(error);
        for pending in self.pending.drain(..) {
            let outcome = match refused {
                Some(name) if pending.exchange.as_bytes() == name.as_bytes() => {
                    Confirmation::Refused(error.clone())
                }
                _ => Confirmation::Indeterminate(error.clone()),
            };
            resolve(pending.reply, outcome);
        }
        self.returns.clear();
    }
}

/// The exchange a broker's channel close in reply to `basic.publish`
/// names (`... exchange 'NAME' ...`), if it is one.
fn refused_exchange(error: &Error) -> Option<&str> {
    let Error::ChannelClosed { reason, .. } = error else {
        return None;
    };
    if reason.initiator != crate::error::Initiator::Broker
        || reason.method_name() != Some("basic.publish")
    {
        return None;
    }
    let start = reason.text.find("exchange '")? + "exchange '".len();
    let len = reason.text[start..].find('\'')?;
    Some(&reason.text[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::CloseReason;
    use amqp_wire::{BasicProperties, ReplyCode};
    use bytes::Bytes;

    fn s(text: &'static str) -> ShortString {
        ShortString::from_static(text)
    }

    fn to(exchange: ShortString) -> BasicPublish {
        BasicPublish {
            exchange,
            ..Default::default()
        }
    }

    fn publish(t: &mut ConfirmTracker, mandatory: bool) -> oneshot::Receiver<Confirmation> {
        let (tx, rx) = oneshot::channel();
        let publish = BasicPublish {
            exchange: s("ex"),
            routing_key: s("rk"),
            mandatory,
            ..Default::default()
        };
        t.publish(publish, Some(tx));
        rx
    }

    fn outcome(rx: &mut oneshot::Receiver<Confirmation>) -> Option<&'static str> {
        rx.try_recv().ok().map(|o| match o {
            Confirmation::Ack => "ack",
            Confirmation::Nack { .. } => "nack",
            Confirmation::Returned(_) => "returned",
            Confirmation::Indeterminate(_) => "indeterminate",
            Confirmation::Refused(_) => "refused",
            Confirmation::NotConfirmed => "not confirmed",
        })
    }

    fn returned() -> ReturnedMessage {
        ReturnedMessage {
            reply_code: ReplyCode::NO_ROUTE,
            reply_text: s("NO_ROUTE"),
            exchange: s("ex"),
            routing_key: s("rk"),
            properties: Box::new(BasicProperties::default()),
            body: Bytes::from_static(b"x"),
        }
    }

    #[test]
    fn single_acks_resolve_their_publish_only() {
        let mut t = ConfirmTracker::new();
        let mut a = publish(&mut t, false);
        let mut b = publish(&mut t, false);
        t.on_confirm(2, false, false);
        assert_eq!(outcome(&mut b), Some("ack"));
        assert_eq!(outcome(&mut a), None);
        assert_eq!(t.unconfirmed(), 1);
    }

    #[test]
    fn multiple_acks_resolve_everything_up_to_the_tag() {
        let mut t = ConfirmTracker::new();
        let mut rx: Vec<_> = (0..5).map(|_| publish(&mut t, false)).collect();
        t.on_confirm(3, true, false);
        let got: Vec<_> = rx.iter_mut().map(outcome).collect();
        assert_eq!(got, [Some("ack"), Some("ack"), Some("ack"), None, None]);
        t.on_confirm(5, true, true);
        assert_eq!(outcome(&mut rx[3]), Some("nack"));
        assert_eq!(outcome(&mut rx[4]), Some("nack"));
        assert_eq!(t.unconfirmed(), 0);
    }

    #[test]
    fn out_of_order_single_confirms() {
        let mut t = ConfirmTracker::new();
        let mut rx: Vec<_> = (0..4).map(|_| publish(&mut t, false)).collect();
        t.on_confirm(3, false, true);
        t.on_confirm(1, false, false);
        t.on_confirm(4, false, false);
        let got: Vec<_> = rx.iter_mut().map(outcome).collect();
        assert_eq!(got, [Some("ack"), None, Some("nack"), Some("ack")]);
        // A multiple ack over the rest, and a repeated tag, are harmless.
        t.on_confirm(4, true, false);
        t.on_confirm(4, false, false);
        assert_eq!(outcome(&mut rx[1]), Some("ack"));
    }

    #[test]
    fn a_return_before_the_ack_makes_the_outcome_returned() {
        let mut t = ConfirmTracker::new();
        let mut routed = publish(&mut t, true);
        let mut unroutable = publish(&mut t, true);
        t.on_confirm(1, false, false);
        assert_eq!(outcome(&mut routed), Some("ack"));
        t.on_return(returned());
        t.on_confirm(2, false, false);
        assert_eq!(outcome(&mut unroutable), Some("returned"));
    }

    #[test]
    fn a_return_is_matched_to_the_first_mandatory_publish_with_its_key() {
        let mut t = ConfirmTracker::new();
        let mut plain = publish(&mut t, false);
        let mut mandatory = publish(&mut t, true);
        t.on_return(returned());
        t.on_confirm(2, true, false);
        assert_eq!(outcome(&mut plain), Some("ack"));
        assert_eq!(outcome(&mut mandatory), Some("returned"));
    }

    /// Random publishes and confirms (single, multiple, repeated, out of
    /// order, unknown tags) against a plain map of what each publish got.
    #[test]
    fn any_order_of_confirms_resolves_what_a_map_of_publishes_says() {
        let mut next = crate::test_random::below_from(0x2545_f491_4f6c_dd1du64);
        for _ in 0..200 {
            let mut t = ConfirmTracker::new();
            let mut receivers = Vec::new();
            // seq -> Some(nack) once confirmed.
            let mut model: std::collections::BTreeMap<u64, Option<bool>> = Default::default();
            for _ in 0..60 {
                if next(3) == 0 {
                    receivers.push(publish(&mut t, false));
                    model.insert(receivers.len() as u64, None);
                    continue;
                }
                let tag = next(receivers.len() as u64 + 3);
                let (multiple, nack) = (next(2) == 0, next(4) == 0);
                t.on_confirm(tag, multiple, nack);
                for (&seq, outcome) in model.iter_mut() {
                    if outcome.is_none() && (seq == tag || (multiple && seq <= tag)) {
                        *outcome = Some(nack);
                    }
                }
                let unconfirmed = model.values().filter(|o| o.is_none()).count();
                assert_eq!(t.unconfirmed(), unconfirmed);
            }
            for (rx, (seq, expected)) in receivers.iter_mut().zip(model) {
                let expected = expected.map(|nack| if nack { "nack" } else { "ack" });
                assert_eq!(outcome(rx), expected, "publish {seq}");
            }
        }
    }

    #[test]
    fn closing_makes_every_unconfirmed_publish_indeterminate() {
        let mut t = ConfirmTracker::new();
        let mut rx: Vec<_> = (0..3).map(|_| publish(&mut t, false)).collect();
        t.on_confirm(1, false, false);
        t.fail_all(&Error::ConnectionClosed(CloseReason::library(
            ReplyCode::CONNECTION_FORCED,
            "gone",
        )));
        let got: Vec<_> = rx.iter_mut().map(outcome).collect();
        assert_eq!(
            got,
            [Some("ack"), Some("indeterminate"), Some("indeterminate")]
        );
        assert_eq!(t.unconfirmed(), 0);
    }

    #[test]
    fn a_close_in_reply_to_a_publish_refuses_the_publishes_to_the_exchange_it_names() {
        let mut t = ConfirmTracker::new();
        let (tx_ok, mut ok) = oneshot::channel();
        t.publish(to(s("logs")), Some(tx_ok));
        let (tx_bad, mut bad) = oneshot::channel();
        t.publish(to(s("missing")), Some(tx_bad));
        let close = Error::ChannelClosed {
            channel: 1,
            reason: crate::error::CloseReason {
                code: ReplyCode::NOT_FOUND,
                text: "NOT_FOUND - no exchange 'missing' in vhost '/'".into(),
                class_id: 60,
                method_id: 40,
                initiator: crate::error::Initiator::Broker,
            },
        };
        t.fail_all(&close);
        assert_eq!(outcome(&mut bad), Some("refused"));
        // Sent before it to another exchange: it may have arrived.
        assert_eq!(outcome(&mut ok), Some("indeterminate"));
    }
}
