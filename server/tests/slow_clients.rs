//! Clients that take a server's memory hostage: downloads of a large log, and a monitor
//! viewer that stops reading with its socket full. Alone in its test binary (one test,
//! its steps in order), so the process's memory high-water mark (`VmHWM`) and the count
//! of open monitor connections (`/api/metrics`) measure these steps only.
#![allow(clippy::unwrap_used)]

mod common;

use common::{ADMIN_TOKEN, TestServer};
use protocol::Status;
use std::io::Read;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(120);
/// Downloads of the same log at once.
const DOWNLOADS: usize = 4;

fn high_water_kib() -> u64 {
    common::memory_kib("self").1
}

async fn viewers(server: &TestServer) -> u64 {
    let (status, metrics) = server.json("GET", "/api/metrics", None).await;
    assert_eq!(status, 200, "{metrics}");
    metrics["viewers"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_hold_neither_memory_nor_connections() {
    let server = TestServer::start_synthetic("slow-clients").await;

    // 1. About 80 MB of log (under the default SLIPWAY_LOG_MAX_MB), downloaded four times
    //    at once by clients that have read only the start. Read whole into memory, each
    //    download would take the log's size.
    let id = server
        .deploy_script("big-log", "lines 400000\ninterval_us 0\nsize 200\n")
        .await;
    // Followed to its end without keeping the events: this process's memory peak must
    // stay where the server alone put it.
    let mut viewer = server.ws(&format!("id={id}")).await;
    let last = tokio::time::timeout(LIMIT, async {
        loop {
            match viewer.next_event().await {
                Some(protocol::Event::Status { data, .. }) if data.status.is_terminal() => {
                    return data;
                }
                Some(_) => {}
                None => panic!("the monitor closed before the end"),
            }
        }
    })
    .await
    .expect("the deployment ends");
    assert_eq!(last.status, Status::Success, "{}", last.error_message);
    drop(viewer);
    let file = server
        .dir
        .join("data")
        .join("logs")
        .join(format!("{id}.log"));
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(size > 75_000_000, "{size} bytes");

    let before = high_water_kib();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut bodies = Vec::new();
    for _ in 0..DOWNLOADS {
        let response = client
            .get(format!("http://{}/api/deployments/{id}/logs", server.addr))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; charset=utf-8"
        );
        assert_eq!(response.content_length(), Some(size));
        let mut body = response;
        let first = body.chunk().await.unwrap().unwrap();
        bodies.push((first, body));
    }
    // Every download has started: the server holds what each needs now.
    let started = high_water_kib();
    // Then each is read to its end and compared with the file, piece by piece.
    for (first, mut body) in bodies {
        let mut on_disk = std::fs::File::open(&file).unwrap();
        let mut compare = |piece: &[u8]| {
            let mut expected = vec![0u8; piece.len()];
            on_disk.read_exact(&mut expected).unwrap();
            assert!(expected == piece, "the download differs from the log");
        };
        compare(&first);
        let mut read = first.len() as u64;
        while let Some(piece) = body.chunk().await.unwrap() {
            compare(&piece);
            read += piece.len() as u64;
        }
        assert_eq!(read, size);
    }
    let grew_mib = (started - before) / 1024;
    println!(
        "{DOWNLOADS} downloads of a {} MB log at once: memory high-water mark grew by {grew_mib} MiB",
        size / 1_000_000
    );
    assert!(
        grew_mib < 32,
        "the log was read into memory for its downloads: +{grew_mib} MiB"
    );

    // 2. A viewer of a running deployment (its event stream alive) that stops reading
    //    after the handshake, with a tiny receive buffer: the server's writes fill the
    //    socket and wait. The server must give up on it, not keep the connection (and the
    //    deployment's stream) for good.
    let held = server
        .deploy_script("held", "lines 100000\ninterval_us 0\nsize 200\nhold\n")
        .await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stuck = socket.connect(server.addr).await.unwrap();
    let handshake = format!(
        "GET /api/deployments/logs?id={held} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\r\n",
        server.addr
    );
    stuck.write_all(handshake.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(stuck.read_u8().await.unwrap());
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    assert!(viewers(&server).await >= 1);
    // The attack: read nothing for longer than the server's write timeout (60 s, the
    // protocol's silent-peer limit). Meanwhile the server writes the log's 20 MB.
    tokio::time::sleep(Duration::from_secs(75)).await;
    assert_eq!(
        viewers(&server).await,
        0,
        "a viewer that reads nothing is still connected after 75 s"
    );
    // What the server had written before it gave up arrives, then the connection ends,
    // long before the whole log.
    let mut received = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let started = Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stuck.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => received += n as u64,
            Err(_) => panic!(
                "the connection is still open: {received} bytes read in {:?}",
                started.elapsed()
            ),
        }
    }
    assert!(
        received < 15_000_000,
        "the server went on writing: {received} bytes"
    );
    // A viewer that reads gets the deployment as usual.
    let mut viewer = server.ws(&format!("id={held}")).await;
    tokio::time::timeout(LIMIT, async {
        while let Some(event) = viewer.next_event().await {
            if matches!(&event, protocol::Event::Log { data, .. } if data.line.contains("synthetic line 100000 ")) {
                break;
            }
        }
    })
    .await
    .expect("a reading viewer gets every line");
    let (status, _) = server
        .json("POST", &format!("/api/deployments/{held}/cancel"), None)
        .await;
    assert_eq!(status, 200);
    server.stop().await;
}
