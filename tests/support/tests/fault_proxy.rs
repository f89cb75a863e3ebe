//! FaultProxy against local tokio servers (echo, sink, talker): each fault
//! does what it says. The last test goes through the real broker on 5672.

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use pika_test_support::{Direction, FaultProxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// How long "nothing happens" is watched for.
const QUIET: Duration = Duration::from_millis(300);
/// How long anything that should happen may take.
const SOON: Duration = Duration::from_secs(5);

/// An echo server on 127.0.0.1:0; returns its address.
async fn echo_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                loop {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if socket.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    address
}

/// What a sink server saw on one connection.
#[derive(Debug, PartialEq, Eq)]
enum SinkEnd {
    /// This many bytes, then end of stream.
    Eof(usize),
    /// This many bytes, then a read error of this kind.
    Error(usize, ErrorKind),
}

/// A server that reads each connection to its end and reports what it
/// read; returns its address and the reports.
async fn sink_server() -> (String, mpsc::UnboundedReceiver<SinkEnd>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (report, reports) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let report = report.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut total = 0;
                let end = loop {
                    match socket.read(&mut buf).await {
                        Ok(0) => break SinkEnd::Eof(total),
                        Ok(n) => total += n,
                        Err(e) => break SinkEnd::Error(total, e.kind()),
                    }
                };
                let _ = report.send(end);
            });
        }
    });
    (address, reports)
}

/// A server that writes `bytes` bytes on each connection, then keeps it
/// open until the peer closes.
async fn talker_server(bytes: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let data: Vec<u8> = (0..bytes).map(|i| i as u8).collect();
                if socket.write_all(&data).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 64];
                while let Ok(1..) = socket.read(&mut buf).await {}
            });
        }
    });
    address
}

async fn connect(proxy: &FaultProxy) -> TcpStream {
    TcpStream::connect(proxy.address()).await.unwrap()
}

/// Writes `message` and reads it back through an echo server.
async fn round_trip(stream: &mut TcpStream, message: &[u8]) {
    stream.write_all(message).await.unwrap();
    let mut back = vec![0u8; message.len()];
    tokio::time::timeout(SOON, stream.read_exact(&mut back))
        .await
        .expect("the echo within 5 s")
        .unwrap();
    assert_eq!(back, message);
}

/// Reads until end of stream or error; returns the bytes and how it ended.
async fn read_to_end(stream: &mut TcpStream) -> (Vec<u8>, Option<ErrorKind>) {
    let mut all = Vec::new();
    let mut buf = vec![0u8; 4096];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return None,
                Ok(n) => all.extend_from_slice(&buf[..n]),
                Err(e) => return Some(e.kind()),
            }
        }
    };
    let end = tokio::time::timeout(SOON, read)
        .await
        .expect("the stream ends within 5 s");
    (all, end)
}

/// Waits until `condition` holds (checked every 10 ms, 5 s at most).
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < SOON, "not within 5 s: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn forwards_both_ways_and_counts() {
    let proxy = FaultProxy::start(&echo_server().await).await.unwrap();
    assert_eq!(proxy.address(), format!("127.0.0.1:{}", proxy.port()));
    assert_eq!(
        proxy.url(),
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port())
    );
    let mut first = connect(&proxy).await;
    let mut second = connect(&proxy).await;
    round_trip(&mut first, b"hello").await;
    round_trip(&mut second, b"hello, again").await;
    assert_eq!(proxy.connections_accepted(), 2);
    assert_eq!(proxy.connections_open(), 2);
    assert_eq!(proxy.bytes_forwarded(Direction::ClientToBroker), 17);
    assert_eq!(proxy.bytes_forwarded(Direction::BrokerToClient), 17);
    drop(first);
    eventually("one connection open", || proxy.connections_open() == 1).await;
    assert_eq!(proxy.connections_accepted(), 2);
}

#[tokio::test]
async fn a_client_close_reaches_the_server_as_end_of_stream() {
    let (address, mut reports) = sink_server().await;
    let proxy = FaultProxy::start(&address).await.unwrap();
    let mut client = connect(&proxy).await;
    client.write_all(b"twelve bytes").await.unwrap();
    client.shutdown().await.unwrap();
    let end = tokio::time::timeout(SOON, reports.recv()).await.unwrap();
    assert_eq!(end, Some(SinkEnd::Eof(12)));
}

#[tokio::test]
async fn cut_ends_every_open_connection_with_end_of_stream() {
    let (address, mut reports) = sink_server().await;
    let proxy = FaultProxy::start(&address).await.unwrap();
    let mut clients = vec![connect(&proxy).await, connect(&proxy).await];
    for client in &mut clients {
        client.write_all(b"abc").await.unwrap();
    }
    eventually("both connected", || {
        proxy.bytes_forwarded(Direction::ClientToBroker) == 6
    })
    .await;
    assert_eq!(proxy.cut().await, 2);
    for client in &mut clients {
        assert_eq!(read_to_end(client).await, (vec![], None));
    }
    for _ in 0..2 {
        let end = tokio::time::timeout(SOON, reports.recv()).await.unwrap();
        assert_eq!(end, Some(SinkEnd::Eof(3)), "the server sees a FIN too");
    }
    assert_eq!(proxy.connections_open(), 0);
    // Later connections are not affected.
    let proxy_to_echo = FaultProxy::start(&echo_server().await).await.unwrap();
    let mut before = connect(&proxy_to_echo).await;
    round_trip(&mut before, b"x").await;
    assert_eq!(proxy_to_echo.cut().await, 1);
    let mut after = connect(&proxy_to_echo).await;
    round_trip(&mut after, b"still forwarding").await;
}

#[tokio::test]
async fn reset_ends_every_open_connection_with_connection_reset() {
    let (address, mut reports) = sink_server().await;
    let proxy = FaultProxy::start(&address).await.unwrap();
    let mut client = connect(&proxy).await;
    client.write_all(b"abc").await.unwrap();
    eventually("connected", || {
        proxy.bytes_forwarded(Direction::ClientToBroker) == 3
    })
    .await;
    assert_eq!(proxy.reset().await, 1);
    assert_eq!(
        read_to_end(&mut client).await,
        (vec![], Some(ErrorKind::ConnectionReset))
    );
    let end = tokio::time::timeout(SOON, reports.recv()).await.unwrap();
    assert_eq!(end, Some(SinkEnd::Error(3, ErrorKind::ConnectionReset)));
}

#[tokio::test]
async fn black_hole_forwards_nothing_and_closes_nothing_until_turned_off() {
    let proxy = FaultProxy::start(&echo_server().await).await.unwrap();
    let mut client = connect(&proxy).await;
    round_trip(&mut client, b"before").await;
    proxy.black_hole(true);
    assert!(proxy.is_black_hole());
    client.write_all(b"during").await.unwrap();
    let mut buf = [0u8; 16];
    assert!(
        tokio::time::timeout(QUIET, client.read(&mut buf))
            .await
            .is_err(),
        "no data and no end of stream while black-holed"
    );
    // New connections are silent too.
    let mut late = connect(&proxy).await;
    late.write_all(b"late").await.unwrap();
    assert!(tokio::time::timeout(QUIET, late.read(&mut buf))
        .await
        .is_err());
    assert_eq!(proxy.connections_open(), 2);
    assert_eq!(proxy.bytes_forwarded(Direction::ClientToBroker), 6);
    // Healed: what was held arrives, in order, nothing lost.
    proxy.black_hole(false);
    let mut back = [0u8; 6];
    tokio::time::timeout(SOON, client.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&back, b"during");
    let mut back = [0u8; 4];
    tokio::time::timeout(SOON, late.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&back, b"late");
    round_trip(&mut client, b"after").await;
}

#[tokio::test]
async fn cut_and_reset_work_while_black_holed() {
    let proxy = FaultProxy::start(&echo_server().await).await.unwrap();
    let mut first = connect(&proxy).await;
    let mut second = connect(&proxy).await;
    round_trip(&mut first, b"a").await;
    round_trip(&mut second, b"b").await;
    proxy.black_hole(true);
    first.write_all(b"held").await.unwrap();
    assert_eq!(proxy.cut().await, 2);
    assert_eq!(read_to_end(&mut first).await, (vec![], None));
    assert_eq!(read_to_end(&mut second).await, (vec![], None));

    let mut third = connect(&proxy).await;
    third.write_all(b"held").await.unwrap();
    eventually("third open", || proxy.connections_open() == 1).await;
    assert_eq!(proxy.reset().await, 1);
    assert_eq!(
        read_to_end(&mut third).await,
        (vec![], Some(ErrorKind::ConnectionReset))
    );
}

#[tokio::test]
async fn delay_adds_latency_each_way() {
    let proxy = FaultProxy::start(&echo_server().await).await.unwrap();
    let mut client = connect(&proxy).await;
    round_trip(&mut client, b"warm up").await;
    let started = Instant::now();
    round_trip(&mut client, b"fast").await;
    let fast = started.elapsed();
    assert!(fast < Duration::from_millis(250), "{fast:?}");

    proxy.delay(Duration::from_millis(150));
    assert_eq!(proxy.current_delay(), Duration::from_millis(150));
    let started = Instant::now();
    round_trip(&mut client, b"slow").await;
    let slow = started.elapsed();
    assert!(
        slow >= Duration::from_millis(300) && slow < Duration::from_millis(1200),
        "150 ms each way: {slow:?}"
    );

    // Latency, not a queue: five chunks sent 10 ms apart come back about
    // 340 ms after the first, not 5 x 300 ms.
    let started = Instant::now();
    for _ in 0..5 {
        client.write_all(b"p").await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut back = [0u8; 5];
    tokio::time::timeout(SOON, client.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    let pipelined = started.elapsed();
    assert!(pipelined < Duration::from_millis(1200), "{pipelined:?}");

    proxy.delay(Duration::ZERO);
    let started = Instant::now();
    round_trip(&mut client, b"fast again").await;
    assert!(started.elapsed() < Duration::from_millis(250));
}

#[tokio::test]
async fn cut_after_bytes_client_to_broker_passes_exactly_that_many() {
    let (address, mut reports) = sink_server().await;
    let proxy = FaultProxy::start(&address).await.unwrap();
    proxy.cut_after_bytes(10, Direction::ClientToBroker);
    let mut client = connect(&proxy).await;
    client.write_all(&[7u8; 100]).await.unwrap();
    let end = tokio::time::timeout(SOON, reports.recv()).await.unwrap();
    assert_eq!(end, Some(SinkEnd::Eof(10)));
    assert_eq!(read_to_end(&mut client).await, (vec![], None));
    assert_eq!(proxy.bytes_forwarded(Direction::ClientToBroker), 10);

    // Only the next connection: the one after passes everything.
    let mut client = connect(&proxy).await;
    client.write_all(&[7u8; 100]).await.unwrap();
    client.shutdown().await.unwrap();
    let end = tokio::time::timeout(SOON, reports.recv()).await.unwrap();
    assert_eq!(end, Some(SinkEnd::Eof(100)));
}

#[tokio::test]
async fn cut_after_bytes_broker_to_client_passes_exactly_that_many() {
    let proxy = FaultProxy::start(&talker_server(100).await).await.unwrap();
    proxy.cut_after_bytes(10, Direction::BrokerToClient);
    let mut client = connect(&proxy).await;
    let (bytes, end) = read_to_end(&mut client).await;
    assert_eq!(bytes, (0..10).collect::<Vec<u8>>());
    assert_eq!(end, None, "end of stream, not a reset");

    let mut client = connect(&proxy).await;
    let mut all = [0u8; 100];
    tokio::time::timeout(SOON, client.read_exact(&mut all))
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_sweep_of_cut_points() {
    let (address, mut reports) = sink_server().await;
    let proxy = FaultProxy::start(&address).await.unwrap();
    // 0: cut before any byte passes.
    for cut_at in 0..8u64 {
        proxy.cut_connections_after_bytes(usize::MAX, cut_at, Direction::ClientToBroker);
        let mut client = connect(&proxy).await;
        // The write may fail once the proxy has closed (cut_at 0).
        let _ = client.write_all(b"AMQP\x00\x00\x09\x01").await;
        let end = tokio::time::timeout(SOON, reports.recv()).await.unwrap();
        assert_eq!(end, Some(SinkEnd::Eof(cut_at as usize)), "cut at {cut_at}");
        let (bytes, _) = read_to_end(&mut client).await;
        assert!(bytes.is_empty());
    }
    proxy.clear_cut_after_bytes();
    let mut client = connect(&proxy).await;
    client.write_all(b"AMQP\x00\x00\x09\x01").await.unwrap();
    client.shutdown().await.unwrap();
    let end = tokio::time::timeout(SOON, reports.recv()).await.unwrap();
    assert_eq!(end, Some(SinkEnd::Eof(8)));
}

#[tokio::test]
async fn refuse_makes_connects_fail_until_turned_off() {
    let proxy = FaultProxy::start(&echo_server().await).await.unwrap();
    let mut open = connect(&proxy).await;
    round_trip(&mut open, b"before").await;
    proxy.refuse(true).await.unwrap();
    for _ in 0..3 {
        let error = TcpStream::connect(proxy.address()).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ConnectionRefused);
    }
    // Open connections are not affected.
    round_trip(&mut open, b"during").await;
    proxy.refuse(false).await.unwrap();
    let mut again = connect(&proxy).await;
    round_trip(&mut again, b"after").await;
    assert_eq!(proxy.connections_accepted(), 2);
}

#[tokio::test]
async fn heal_turns_every_fault_off() {
    let proxy = FaultProxy::start(&echo_server().await).await.unwrap();
    proxy.black_hole(true);
    proxy.delay(Duration::from_secs(10));
    proxy.cut_after_bytes(1, Direction::BrokerToClient);
    proxy.refuse(true).await.unwrap();
    proxy.heal().await.unwrap();
    let mut client = connect(&proxy).await;
    round_trip(&mut client, b"healthy").await;
}

#[tokio::test]
async fn a_target_that_refuses_is_a_reset_for_the_client() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = closed.local_addr().unwrap().to_string();
    drop(closed);
    let proxy = FaultProxy::start(&address).await.unwrap();
    let mut client = connect(&proxy).await;
    let (bytes, end) = read_to_end(&mut client).await;
    assert!(bytes.is_empty());
    assert_eq!(end, Some(ErrorKind::ConnectionReset));
    eventually("nothing open", || proxy.connections_open() == 0).await;
}

#[tokio::test]
async fn dropping_the_last_handle_stops_the_proxy() {
    let (address, mut reports) = sink_server().await;
    let proxy = FaultProxy::start(&address).await.unwrap();
    let clone = proxy.clone();
    let proxy_address = proxy.address();
    let mut client = connect(&proxy).await;
    client.write_all(b"abc").await.unwrap();
    drop(proxy);
    // A clone keeps it running.
    client.write_all(b"def").await.unwrap();
    eventually("forwarded", || {
        clone.bytes_forwarded(Direction::ClientToBroker) == 6
    })
    .await;
    drop(clone);
    assert_eq!(read_to_end(&mut client).await, (vec![], None));
    let end = tokio::time::timeout(SOON, reports.recv()).await.unwrap();
    assert_eq!(end, Some(SinkEnd::Eof(6)));
    let started = Instant::now();
    loop {
        match TcpStream::connect(&proxy_address).await {
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
                break;
            }
            Ok(_) => {
                // The accept task may not have ended yet.
                assert!(started.elapsed() < SOON, "still listening");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Through the local RabbitMQ on 5672: the protocol header gets the
/// broker's connection.start.
#[tokio::test]
async fn an_amqp_handshake_starts_through_the_proxy() {
    let proxy = FaultProxy::start("127.0.0.1:5672").await.unwrap();
    let mut client = connect(&proxy).await;
    client.write_all(b"AMQP\x00\x00\x09\x01").await.unwrap();
    // Frame header: type (1 = method), channel (0), payload size; then
    // the method's class (10 = connection) and id (10 = start).
    let mut head = [0u8; 11];
    tokio::time::timeout(SOON, client.read_exact(&mut head))
        .await
        .expect("connection.start within 5 s")
        .unwrap();
    assert_eq!(head[0], 1, "a method frame");
    assert_eq!(&head[1..3], &[0, 0], "on channel 0");
    assert_eq!(&head[7..11], &[0, 10, 0, 10], "connection.start");
    assert_eq!(proxy.connections_open(), 1);
}
