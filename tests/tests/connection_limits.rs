//! Limits on connections and HTTP/2: a host that opens connections and stalls their handshakes
//! holds only its own share of the handshake places; connections beyond the cap are closed at
//! once and logged; a header list over the limit is refused with a reason code; a connection
//! with no request in progress is closed after the idle timeout, one with a request in progress
//! is not; a connection gets at most `max_concurrent_streams` requests at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use isnad_tests::providers::{Behaviour, ProviderDouble};
use isnad_tests::{FEDERATION, Federation, Gateway, applicant, client_with, get, refusal, request};
use isnad_tls::policy::ExpectedPeer;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tonic::Code;

fn gateway(federation: &Federation, labour: Option<String>, limits: &str) -> Gateway {
    let providers = federation.providers();
    let upstreams: Vec<(&str, String)> = providers
        .iter()
        .map(|(agency, endpoint)| match (&labour, agency.as_str()) {
            (Some(labour), "labour-ministry") => (agency.as_str(), labour.clone()),
            _ => (agency.as_str(), endpoint.clone()),
        })
        .collect();
    federation.serve_gateway(&upstreams, limits)
}

fn identity() -> isnad_proto::v1::AttributesRequest {
    request("identity.person", "housing-grant", &["full_name_en"])
}

/// A TCP connection to `addr` from the loopback address `from` (another "host").
async fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{from}:0").parse().expect("address"))
        .expect("bind");
    socket.connect(addr).await.expect("connect")
}

/// Whether the peer closed `stream` within `within` (end of stream or a reset).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    matches!(
        tokio::time::timeout(within, stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// A TLS connection to `addr` as `name`, handshake done, nothing sent.
async fn tls_as(
    federation: &Federation,
    name: &str,
    addr: SocketAddr,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let config = isnad_tls::policy::fixed_client_config(
        federation.material(name),
        ExpectedPeer::AnyGateway {
            trust_domain: FEDERATION.into(),
        },
    )
    .expect("config");
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let server = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(server, tcp)
        .await
        .expect("handshake")
}

#[tokio::test]
async fn a_host_stalling_handshakes_does_not_keep_a_well_behaved_client_out() {
    let federation = Federation::start();
    // 32 handshake places, 4 per address, and stalled handshakes held for 20 s.
    let gateway = gateway(
        &federation,
        None,
        "  max_handshakes: 32\n  max_handshakes_per_ip: 4\n  handshake_timeout_ms: 20000\n",
    );
    // Another "host" (127.0.0.2) opens 100 connections and never sends a byte.
    let mut stalled = Vec::new();
    for _ in 0..100 {
        stalled.push(connect_from("127.0.0.2", gateway.addr).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The well-behaved client connects and is served without waiting for them.
    let asked = Instant::now();
    let mut client = client_with(gateway.addr, &federation.material("housing-programme"));
    let served = tokio::time::timeout(Duration::from_secs(3), get(&mut client, identity()))
        .await
        .expect("served without waiting for the stalled handshakes")
        .expect("served");
    assert!(served.attributes.contains_key("full_name_en"));
    assert!(asked.elapsed() < Duration::from_secs(3));

    // The stalling host kept 4 places; its other connections were closed at once.
    let mut open = 0;
    for stream in &mut stalled {
        if !closed_within(stream, Duration::from_millis(50)).await {
            open += 1;
        }
    }
    assert!(open <= 4, "{open} stalled handshakes are still open");
    assert!(
        gateway
            .process
            .logs()
            .contains("too many handshakes in progress from one address"),
        "the refusals are logged"
    );
    assert!(!gateway.process.logs().contains(&applicant()));
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_at_once_and_logged() {
    let federation = Federation::start();
    let gateway = gateway(&federation, None, "  max_connections: 3\n");
    let material = federation.material("housing-programme");
    let mut held = Vec::new();
    for n in 0..3 {
        let mut client = client_with(gateway.addr, &material);
        get(&mut client, identity())
            .await
            .unwrap_or_else(|status| panic!("connection {n}: {status:?}"));
        held.push(client);
    }
    // A fourth connection is closed before its handshake.
    let mut fourth = TcpStream::connect(gateway.addr).await.expect("connect");
    assert!(
        closed_within(&mut fourth, Duration::from_secs(1)).await,
        "the connection over the cap was not closed at once"
    );
    let mut refused = client_with(gateway.addr, &material);
    let status = get(&mut refused, identity())
        .await
        .expect_err("no connection over the cap");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        gateway
            .process
            .logs()
            .contains("connections refused: max_connections are open"),
        "the refusal is logged"
    );
    // One of the three goes away: a new connection gets its place.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut client = client_with(gateway.addr, &material);
        match get(&mut client, identity()).await {
            Ok(_) => break,
            Err(status) => assert!(
                Instant::now() < deadline,
                "no place was given back: {status:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!gateway.process.logs().contains(&applicant()));
}

#[tokio::test]
async fn a_header_list_over_the_limit_is_refused_with_a_reason_code() {
    let federation = Federation::start();
    let gateway = gateway(&federation, None, "  max_header_list_bytes: 4096\n");
    let mut client = client_with(gateway.addr, &federation.material("housing-programme"));
    let padded = |bytes: usize| {
        let mut asked = tonic::Request::new(identity());
        asked
            .metadata_mut()
            .insert("x-padding", "a".repeat(bytes).parse().expect("ascii"));
        asked
    };
    // Within the limit: served.
    client
        .get_attributes(padded(2000))
        .await
        .expect("headers within the limit");
    // Over it: refused with its reason, nothing released.
    let result = client
        .get_attributes(padded(5000))
        .await
        .map(tonic::Response::into_inner);
    if let Err(status) = &result {
        assert!(!status.message().contains(&applicant()));
    }
    assert_eq!(
        refusal(result),
        (Code::InvalidArgument, "headers_too_large".to_owned())
    );
    // Far over it (4x): HTTP/2 refuses it itself (no reason code), and the gateway goes on.
    let far = client.get_attributes(padded(20_000)).await;
    assert!(
        far.is_err(),
        "a header list far over the limit was answered"
    );
    let mut fresh = client_with(gateway.addr, &federation.material("housing-programme"));
    get(&mut fresh, identity())
        .await
        .expect("the gateway keeps serving");
    assert!(
        gateway.process.logs().contains("headers_too_large"),
        "the refusal is logged"
    );
    assert!(!gateway.process.logs().contains(&applicant()));
}

#[tokio::test]
async fn an_idle_connection_is_closed_and_one_with_a_request_in_progress_is_not() {
    let federation = Federation::start();
    let slow = ProviderDouble::start(
        &federation.material("labour-ministry"),
        Behaviour::Slow(Duration::from_millis(2500)),
    )
    .await;
    let gateway = gateway(
        &federation,
        Some(slow.endpoint()),
        "  idle_timeout_ms: 1000\n",
    );

    // A connection that never asks anything is closed after about the timeout (the gateway's
    // own HTTP/2 settings arrive first).
    let mut idle = tls_as(&federation, "housing-programme", gateway.addr).await;
    let connected = Instant::now();
    let mut buf = [0u8; 1024];
    let closed_after = loop {
        match tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break connected.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("the idle connection was not closed within 10 s"),
        }
    };
    assert!(
        closed_after >= Duration::from_millis(900) && closed_after < Duration::from_secs(4),
        "closed after {closed_after:?}, the timeout is 1 s"
    );

    // A request that takes longer than the timeout keeps its connection.
    let mut client = client_with(gateway.addr, &federation.material("housing-programme"));
    get(
        &mut client,
        request("labour.employment", "housing-grant", &["employed"]),
    )
    .await
    .expect("a request in progress is not cut off as idle");
    assert!(!gateway.process.logs().contains(&applicant()));
}

#[tokio::test]
async fn a_connection_gets_at_most_max_concurrent_streams_requests_at_once() {
    let federation = Federation::start();
    let slow = ProviderDouble::start(
        &federation.material("labour-ministry"),
        Behaviour::Slow(Duration::from_millis(1500)),
    )
    .await;
    let gateway = gateway(
        &federation,
        Some(slow.endpoint()),
        "  max_concurrent_streams: 2\n",
    );
    // One connection, four requests at once: two streams at a time, the others wait for a
    // stream (the client queues them once it has the gateway's HTTP/2 settings; streams opened
    // before, over the limit, are refused with REFUSED_STREAM, which a client may retry).
    let mut client = client_with(gateway.addr, &federation.material("housing-programme"));
    get(&mut client, identity()).await.expect("connected");
    let started = Instant::now();
    let requests: Vec<_> = (0..4)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move {
                get(
                    &mut client,
                    request("labour.employment", "housing-grant", &["employed"]),
                )
                .await
            })
        })
        .collect();
    for request in requests {
        request.await.expect("task").expect("served");
    }
    assert!(
        started.elapsed() >= Duration::from_millis(3000),
        "four 1.5 s requests over two streams take two rounds: {:?}",
        started.elapsed()
    );
}
