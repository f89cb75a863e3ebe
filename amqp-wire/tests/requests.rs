//! Synchronous methods and their replies: the generated [`Request`] impls,
//! [`Method::expects_reply`] and [`Method::nowait`].

mod support;

use std::collections::BTreeSet;
use std::fmt::Debug;

use amqp_wire::*;
use support::method_strategies::every_method;

/// The rule amqp-conn used before the pairing was generated: same class,
/// method id + 1 and a name ending in `-ok`, with `exchange.unbind-ok`
/// (id 51, not 41) and `basic.get` as exceptions.
fn old_is_reply_to(request: &Method, reply: &Method) -> bool {
    if request.class_id() != reply.class_id() {
        return false;
    }
    match request {
        Method::ExchangeUnbind(_) => matches!(reply, Method::ExchangeUnbindOk(_)),
        Method::BasicGet(_) => matches!(reply, Method::BasicGetOk(_) | Method::BasicGetEmpty(_)),
        _ => reply.method_id() == request.method_id() + 1 && reply.name().ends_with("-ok"),
    }
}

/// Checks one `Request` impl against every method; returns its name.
fn check<R>() -> &'static str
where
    R: Request + Default,
    R::Reply: Default + Into<Method> + PartialEq + Debug,
{
    let request: Method = R::default().into();
    assert_eq!(request.name(), R::NAME);
    assert!(request.is_synchronous(), "{} is synchronous", R::NAME);
    let reply: Method = R::Reply::default().into();
    assert_eq!(reply.name(), format!("{}-ok", R::NAME));
    assert_eq!(reply.class_id(), request.class_id());
    assert_eq!(R::reply_from(reply.clone()), Ok(R::Reply::default()));
    for method in every_method() {
        let answers = method.name() == reply.name();
        assert_eq!(
            R::is_reply(&method),
            answers,
            "{} vs {}",
            R::NAME,
            method.name()
        );
        assert_eq!(request.expects_reply(&method), answers);
        if !answers {
            assert_eq!(R::reply_from(method.clone()), Err(method));
        }
    }
    assert_eq!(R::default().nowait(), request.nowait());
    R::NAME
}

#[test]
fn every_method_lists_the_whole_spec() {
    let listed: BTreeSet<&str> = every_method().iter().map(Method::name).collect();
    let spec: BTreeSet<&str> = (0..=u8::MAX as u16)
        .flat_map(|class| (0..=u8::MAX as u16).filter_map(move |m| Method::name_of(class, m)))
        .collect();
    assert_eq!(listed, spec);
    assert_eq!(listed.len(), every_method().len(), "each method once");
}

#[test]
fn every_synchronous_method_but_basic_get_is_a_request() {
    let checked: BTreeSet<&str> = [
        check::<ConnectionStart>(),
        check::<ConnectionSecure>(),
        check::<ConnectionTune>(),
        check::<ConnectionOpen>(),
        check::<ConnectionClose>(),
        check::<ConnectionUpdateSecret>(),
        check::<ChannelOpen>(),
        check::<ChannelFlow>(),
        check::<ChannelClose>(),
        check::<AccessRequest>(),
        check::<ExchangeDeclare>(),
        check::<ExchangeDelete>(),
        check::<ExchangeBind>(),
        check::<ExchangeUnbind>(),
        check::<QueueDeclare>(),
        check::<QueueBind>(),
        check::<QueuePurge>(),
        check::<QueueDelete>(),
        check::<QueueUnbind>(),
        check::<BasicQos>(),
        check::<BasicConsume>(),
        check::<BasicCancel>(),
        check::<BasicRecover>(),
        check::<TxSelect>(),
        check::<TxCommit>(),
        check::<TxRollback>(),
        check::<ConfirmSelect>(),
    ]
    .into_iter()
    .collect();
    let synchronous: BTreeSet<&str> = every_method()
        .iter()
        .filter(|m| m.is_synchronous() && !matches!(m, Method::BasicGet(_)))
        .map(Method::name)
        .collect();
    assert_eq!(checked, synchronous);
}

#[test]
fn expects_reply_agrees_with_the_old_rule_for_every_pair() {
    let methods = every_method();
    for request in &methods {
        for reply in &methods {
            assert_eq!(
                request.expects_reply(reply),
                old_is_reply_to(request, reply),
                "{} vs {}",
                request.name(),
                reply.name()
            );
        }
        let answered = methods.iter().any(|reply| request.expects_reply(reply));
        assert_eq!(answered, request.is_synchronous(), "{}", request.name());
    }
}

#[test]
fn expects_reply_pairs() {
    let expects = |request: Method, reply: Method| request.expects_reply(&reply);
    let declare_ok = QueueDeclareOk {
        queue: ShortString::from_static("q"),
        message_count: 1,
        consumer_count: 2,
    };
    assert!(expects(QueueDeclare::default().into(), declare_ok.into()));
    assert!(!expects(
        QueueDeclare::default().into(),
        QueueBindOk::default().into()
    ));
    assert!(!expects(
        QueueDeclare::default().into(),
        ExchangeDeclareOk::default().into()
    ));
    assert_eq!(ExchangeUnbindOk::METHOD_ID, 51);
    assert!(expects(
        ExchangeUnbind::default().into(),
        ExchangeUnbindOk::default().into()
    ));
    assert!(expects(
        BasicGet::default().into(),
        BasicGetEmpty::default().into()
    ));
    assert!(expects(
        BasicGet::default().into(),
        BasicGetOk::default().into()
    ));
    assert!(!expects(
        BasicConsume::default().into(),
        BasicCancel::default().into()
    ));
    assert!(expects(
        ConfirmSelect::default().into(),
        ConfirmSelectOk::default().into()
    ));
    assert!(expects(
        ChannelClose::default().into(),
        ChannelCloseOk::default().into()
    ));
    // Replies and asynchronous methods expect nothing.
    assert!(!expects(
        QueueDeclareOk::default().into(),
        QueueDeclareOk::default().into()
    ));
    assert!(!expects(
        BasicPublish::default().into(),
        BasicAck::default().into()
    ));
}

#[test]
fn reply_from_returns_the_typed_reply() {
    let ok = QueueDeclareOk {
        queue: ShortString::from_static("amq.gen-1"),
        message_count: 3,
        consumer_count: 1,
    };
    let reply: QueueDeclareOk = QueueDeclare::reply_from(ok.clone().into()).unwrap();
    assert_eq!(reply, ok);
    assert_eq!(reply.queue, "amq.gen-1");

    let unbind_ok: ExchangeUnbindOk =
        ExchangeUnbind::reply_from(ExchangeUnbindOk::default().into()).unwrap();
    assert_eq!(unbind_ok, ExchangeUnbindOk::default());

    let other: Method = QueueBindOk::default().into();
    assert_eq!(QueueDeclare::reply_from(other.clone()), Err(other));
}

#[test]
fn nowait_reflects_the_field() {
    fn both<R: Request + Clone>(request: R) -> (bool, bool) {
        let method: Method = request.clone().into();
        (request.nowait(), method.nowait())
    }
    let set = |nowait: bool| (nowait, nowait);
    for nowait in [false, true] {
        assert_eq!(
            both(QueueDeclare {
                nowait,
                ..Default::default()
            }),
            set(nowait)
        );
        assert_eq!(
            both(QueueBind {
                nowait,
                ..Default::default()
            }),
            set(nowait)
        );
        assert_eq!(
            both(QueuePurge {
                nowait,
                ..Default::default()
            }),
            set(nowait)
        );
        assert_eq!(
            both(QueueDelete {
                nowait,
                ..Default::default()
            }),
            set(nowait)
        );
        assert_eq!(
            both(ExchangeDeclare {
                nowait,
                ..Default::default()
            }),
            set(nowait)
        );
        assert_eq!(
            both(ExchangeDelete {
                nowait,
                ..Default::default()
            }),
            set(nowait)
        );
        assert_eq!(
            both(ExchangeBind {
                nowait,
                ..Default::default()
            }),
            set(nowait)
        );
        assert_eq!(
            both(ExchangeUnbind {
                nowait,
                ..Default::default()
            }),
            set(nowait)
        );
        assert_eq!(
            both(BasicConsume {
                nowait,
                ..Default::default()
            }),
            set(nowait)
        );
        assert_eq!(
            both(BasicCancel {
                nowait,
                ..Default::default()
            }),
            set(nowait)
        );
        assert_eq!(both(ConfirmSelect { nowait }), set(nowait));
    }
    // Methods without the field never ask for no reply.
    assert_eq!(both(QueueUnbind::default()), (false, false));
    assert_eq!(both(BasicQos::default()), (false, false));
    assert_eq!(both(ChannelClose::default()), (false, false));
    assert!(!Method::from(BasicGet::default()).nowait());
    assert!(!Method::from(BasicPublish::default()).nowait());
    // The spec's defaults all wait for the reply.
    assert!(every_method().iter().all(|m| !m.nowait()));
}
