//! The connection's record of what the broker confirmed it declared,
//! bound and consumes, in the order the broker confirmed it: what a
//! reconnection will replay (see `docs/design/connect_robust.md`).
//!
//! An entry is recorded when the broker's `-ok` arrives (a refused
//! request records nothing), and removed by the delete, unbind or cancel
//! that undoes it, or by the close of the channel a consumer lived on.
//! Passive declares record nothing: they create nothing.

use amqp_wire::{
    BasicConsume, ExchangeBind, ExchangeDeclare, Method, QueueBind, QueueDeclare, ShortString,
};

/// One thing the connection declared, bound or consumes: see
/// [`Connection::topology`](crate::Connection::topology).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TopologyEntry {
    /// An exchange, as declared.
    Exchange(ExchangeDeclare),
    /// A queue, as declared; `name` is the broker's (the one it chose
    /// when declared with `""`).
    Queue {
        /// The declare.
        declare: QueueDeclare,
        /// The queue's name.
        name: ShortString,
    },
    /// A queue bound to an exchange.
    QueueBinding(QueueBind),
    /// An exchange bound to an exchange.
    ExchangeBinding(ExchangeBind),
    /// A consumer on a channel, with the tag the broker confirmed.
    Consumer {
        /// The channel number.
        channel: u16,
        /// The consume request.
        consume: BasicConsume,
        /// The consumer tag.
        tag: ShortString,
    },
}

/// One line a person reads: `exchange logs (topic)`, `queue amq.gen-..`,
/// `binding amq.gen-.. <- logs (a.*)`, `consumer ctag-1 on channel 2`.
impl std::fmt::Display for TopologyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TopologyEntry::Exchange(e) => write!(f, "exchange {} ({})", e.exchange, e.kind),
            TopologyEntry::Queue { name, .. } => write!(f, "queue {name}"),
            TopologyEntry::QueueBinding(b) => {
                write!(
                    f,
                    "binding {} <- {} ({})",
                    b.queue, b.exchange, b.routing_key
                )
            }
            TopologyEntry::ExchangeBinding(b) => {
                write!(
                    f,
                    "binding {} <- {} ({})",
                    b.destination, b.source, b.routing_key
                )
            }
            TopologyEntry::Consumer { channel, tag, .. } => {
                write!(f, "consumer {tag} on channel {channel}")
            }
        }
    }
}

impl TopologyEntry {
    /// The queue `old` is now called `new` (a server-named queue declared
    /// again): this entry follows.
    pub(crate) fn rename_queue(&mut self, old: &ShortString, new: &ShortString) {
        let name = match self {
            TopologyEntry::Queue { name, .. } => name,
            TopologyEntry::QueueBinding(bind) => &mut bind.queue,
            TopologyEntry::Consumer { consume, .. } => &mut consume.queue,
            TopologyEntry::Exchange(_) | TopologyEntry::ExchangeBinding(_) => return,
        };
        if name == old {
            *name = new.clone();
        }
    }
}

/// The record, in the order the broker confirmed its entries.
#[derive(Debug, Default)]
pub(crate) struct Topology {
    entries: Vec<TopologyEntry>,
}

impl Topology {
    /// A copy of the record.
    pub(crate) fn snapshot(&self) -> Vec<TopologyEntry> {
        self.entries.clone()
    }

    /// Records what `request` did, now that the broker answered it with
    /// `reply` on `channel`.
    pub(crate) fn confirmed(&mut self, channel: u16, request: &Method, reply: &Method) {
        match (request, reply) {
            (Method::ExchangeDeclare(declare), Method::ExchangeDeclareOk(_))
                if !declare.passive =>
            {
                self.entries.retain(
                    |entry| !matches!(entry, TopologyEntry::Exchange(e) if e.exchange == declare.exchange),
                );
                self.entries.push(TopologyEntry::Exchange(declare.clone()));
            }
            (Method::QueueDeclare(declare), Method::QueueDeclareOk(ok)) if !declare.passive => {
                self.entries.retain(
                    |entry| !matches!(entry, TopologyEntry::Queue { name, .. } if *name == ok.queue),
                );
                self.entries.push(TopologyEntry::Queue {
                    declare: declare.clone(),
                    name: ok.queue.clone(),
                });
            }
            (Method::QueueBind(bind), Method::QueueBindOk(_)) => {
                let entry = TopologyEntry::QueueBinding(without_nowait_queue_bind(bind));
                if !self.entries.contains(&entry) {
                    self.entries.push(entry);
                }
            }
            (Method::QueueUnbind(unbind), Method::QueueUnbindOk(_)) => {
                self.entries.retain(|entry| {
                    !matches!(entry, TopologyEntry::QueueBinding(b)
                        if b.queue == unbind.queue
                            && b.exchange == unbind.exchange
                            && b.routing_key == unbind.routing_key
                            && b.arguments == unbind.arguments)
                });
            }
            (Method::ExchangeBind(bind), Method::ExchangeBindOk(_)) => {
                let entry = TopologyEntry::ExchangeBinding(ExchangeBind {
                    nowait: false,
                    ..bind.clone()
                });
                if !self.entries.contains(&entry) {
                    self.entries.push(entry);
                }
            }
            (Method::ExchangeUnbind(unbind), Method::ExchangeUnbindOk(_)) => {
                self.entries.retain(|entry| {
                    !matches!(entry, TopologyEntry::ExchangeBinding(b)
                        if b.destination == unbind.destination
                            && b.source == unbind.source
                            && b.routing_key == unbind.routing_key
                            && b.arguments == unbind.arguments)
                });
            }
            (Method::QueueDelete(delete), Method::QueueDeleteOk(_)) => {
                self.queue_gone(&delete.queue);
            }
            (Method::ExchangeDelete(delete), Method::ExchangeDeleteOk(_)) => {
                let gone = &delete.exchange;
                self.entries.retain(|entry| match entry {
                    TopologyEntry::Exchange(e) => e.exchange != *gone,
                    TopologyEntry::QueueBinding(b) => b.exchange != *gone,
                    TopologyEntry::ExchangeBinding(b) => {
                        b.source != *gone && b.destination != *gone
                    }
                    _ => true,
                });
            }
            (Method::BasicConsume(consume), Method::BasicConsumeOk(ok)) => {
                self.entries.push(TopologyEntry::Consumer {
                    channel,
                    consume: consume.clone(),
                    tag: ok.consumer_tag.clone(),
                });
            }
            (Method::BasicCancel(cancel), Method::BasicCancelOk(_)) => {
                self.consumer_gone(channel, &cancel.consumer_tag);
            }
            _ => {}
        }
    }

    /// The queue `old` is now called `new`: every entry follows.
    pub(crate) fn rename_queue(&mut self, old: &ShortString, new: &ShortString) {
        for entry in &mut self.entries {
            entry.rename_queue(old, new);
        }
    }

    /// A consumer ended without a cancel-ok: cancelled with `nowait`, or
    /// by the broker.
    pub(crate) fn consumer_gone(&mut self, channel: u16, tag: &ShortString) {
        let Some(index) = self.entries.iter().position(
            |entry| matches!(entry, TopologyEntry::Consumer { channel: c, tag: t, .. } if *c == channel && t == tag),
        ) else {
            return;
        };
        let TopologyEntry::Consumer { consume, .. } = self.entries.remove(index) else {
            unreachable!("the position of a consumer");
        };
        // The broker deletes an auto-delete queue with its last consumer.
        let queue = consume.queue;
        let auto_delete = self.entries.iter().any(
            |entry| matches!(entry, TopologyEntry::Queue { name, declare } if *name == queue && declare.auto_delete),
        );
        let consumed = self.entries.iter().any(
            |entry| matches!(entry, TopologyEntry::Consumer { consume, .. } if consume.queue == queue),
        );
        if auto_delete && !consumed {
            self.queue_gone(&queue);
        }
    }

    /// The channel closed: its consumers are gone.
    pub(crate) fn channel_closed(&mut self, channel: u16) {
        let tags: Vec<ShortString> = self
            .entries
            .iter()
            .filter_map(|entry| match entry {
                TopologyEntry::Consumer {
                    channel: c, tag, ..
                } if *c == channel => Some(tag.clone()),
                _ => None,
            })
            .collect();
        for tag in tags {
            self.consumer_gone(channel, &tag);
        }
    }

    /// The queue is gone, with its bindings and consumers.
    fn queue_gone(&mut self, queue: &ShortString) {
        self.entries.retain(|entry| match entry {
            TopologyEntry::Queue { name, .. } => name != queue,
            TopologyEntry::QueueBinding(b) => b.queue != *queue,
            TopologyEntry::Consumer { consume, .. } => consume.queue != *queue,
            _ => true,
        });
    }
}

fn without_nowait_queue_bind(bind: &QueueBind) -> QueueBind {
    QueueBind {
        nowait: false,
        ..bind.clone()
    }
}

#[cfg(test)]
mod tests {
    use amqp_wire::{
        BasicCancel, BasicCancelOk, BasicConsumeOk, ExchangeDeclareOk, ExchangeDelete,
        ExchangeDeleteOk, QueueBindOk, QueueDeclareOk, QueueDelete, QueueDeleteOk, QueueUnbind,
        QueueUnbindOk,
    };

    use super::*;

    fn s(text: &'static str) -> ShortString {
        ShortString::from_static(text)
    }

    fn declare_queue(
        topology: &mut Topology,
        asked: &'static str,
        named: &'static str,
        auto_delete: bool,
    ) {
        topology.confirmed(
            1,
            &Method::QueueDeclare(QueueDeclare {
                queue: s(asked),
                auto_delete,
                ..Default::default()
            }),
            &Method::QueueDeclareOk(QueueDeclareOk {
                queue: s(named),
                ..Default::default()
            }),
        );
    }

    fn bind(
        topology: &mut Topology,
        queue: &'static str,
        exchange: &'static str,
        key: &'static str,
    ) {
        topology.confirmed(
            1,
            &Method::QueueBind(QueueBind {
                queue: s(queue),
                exchange: s(exchange),
                routing_key: s(key),
                ..Default::default()
            }),
            &Method::QueueBindOk(QueueBindOk {}),
        );
    }

    fn consume(topology: &mut Topology, channel: u16, queue: &'static str, tag: &'static str) {
        topology.confirmed(
            channel,
            &Method::BasicConsume(BasicConsume {
                queue: s(queue),
                ..Default::default()
            }),
            &Method::BasicConsumeOk(BasicConsumeOk {
                consumer_tag: s(tag),
            }),
        );
    }

    fn kinds(topology: &Topology) -> Vec<String> {
        topology
            .snapshot()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn what_the_broker_confirmed_is_recorded_in_order() {
        let mut topology = Topology::default();
        topology.confirmed(
            1,
            &Method::ExchangeDeclare(ExchangeDeclare {
                exchange: s("logs"),
                ..Default::default()
            }),
            &Method::ExchangeDeclareOk(ExchangeDeclareOk {}),
        );
        declare_queue(&mut topology, "", "amq.gen-1", false);
        bind(&mut topology, "amq.gen-1", "logs", "a");
        bind(&mut topology, "amq.gen-1", "logs", "b");
        bind(&mut topology, "amq.gen-1", "logs", "a");
        consume(&mut topology, 2, "amq.gen-1", "ctag-1");
        assert_eq!(
            kinds(&topology),
            [
                "exchange logs (direct)",
                "queue amq.gen-1",
                "binding amq.gen-1 <- logs (a)",
                "binding amq.gen-1 <- logs (b)",
                "consumer ctag-1 on channel 2"
            ]
        );
    }

    #[test]
    fn passive_declares_record_nothing() {
        let mut topology = Topology::default();
        topology.confirmed(
            1,
            &Method::QueueDeclare(QueueDeclare {
                queue: s("tasks"),
                passive: true,
                ..Default::default()
            }),
            &Method::QueueDeclareOk(QueueDeclareOk {
                queue: s("tasks"),
                ..Default::default()
            }),
        );
        assert!(topology.snapshot().is_empty());
    }

    #[test]
    fn unbind_delete_and_cancel_undo_what_they_undo() {
        let mut topology = Topology::default();
        declare_queue(&mut topology, "q", "q", false);
        bind(&mut topology, "q", "x", "a");
        bind(&mut topology, "q", "x", "b");
        consume(&mut topology, 1, "q", "t1");
        topology.confirmed(
            1,
            &Method::QueueUnbind(QueueUnbind {
                queue: s("q"),
                exchange: s("x"),
                routing_key: s("a"),
                ..Default::default()
            }),
            &Method::QueueUnbindOk(QueueUnbindOk {}),
        );
        assert_eq!(
            kinds(&topology),
            ["queue q", "binding q <- x (b)", "consumer t1 on channel 1"]
        );
        topology.confirmed(
            1,
            &Method::BasicCancel(BasicCancel {
                consumer_tag: s("t1"),
                nowait: false,
            }),
            &Method::BasicCancelOk(BasicCancelOk {
                consumer_tag: s("t1"),
            }),
        );
        assert_eq!(kinds(&topology), ["queue q", "binding q <- x (b)"]);
        topology.confirmed(
            1,
            &Method::ExchangeDelete(ExchangeDelete {
                exchange: s("x"),
                ..Default::default()
            }),
            &Method::ExchangeDeleteOk(ExchangeDeleteOk {}),
        );
        assert_eq!(kinds(&topology), ["queue q"]);
        consume(&mut topology, 1, "q", "t2");
        topology.confirmed(
            1,
            &Method::QueueDelete(QueueDelete {
                queue: s("q"),
                ..Default::default()
            }),
            &Method::QueueDeleteOk(QueueDeleteOk { message_count: 0 }),
        );
        assert!(kinds(&topology).is_empty());
    }

    #[test]
    fn an_auto_delete_queue_goes_with_its_last_consumer() {
        let mut topology = Topology::default();
        declare_queue(&mut topology, "", "amq.gen-2", true);
        bind(&mut topology, "amq.gen-2", "x", "k");
        consume(&mut topology, 1, "amq.gen-2", "t1");
        consume(&mut topology, 3, "amq.gen-2", "t2");
        topology.consumer_gone(1, &s("t1"));
        assert_eq!(
            kinds(&topology),
            [
                "queue amq.gen-2",
                "binding amq.gen-2 <- x (k)",
                "consumer t2 on channel 3"
            ]
        );
        topology.channel_closed(3);
        assert!(kinds(&topology).is_empty());
    }
}
