//! A loopback Kafka proxy that can play a cluster whose ACLs deny topic creation: while
//! refusing, it answers every CreateTopics request itself with `TOPIC_AUTHORIZATION_FAILED`
//! for each topic, as Kafka does for a principal without CREATE, whether the topic exists or
//! not. Every other request is forwarded to the broker.
//!
//! The broker must advertise the gate's port, so that clients reach it for every request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::mpsc;

use super::proxy::listen;

/// Kafka's API key of CreateTopics.
const CREATE_TOPICS: i16 = 19;
/// Kafka's error code for a principal not allowed to create or use a topic.
const TOPIC_AUTHORIZATION_FAILED: i16 = 29;

/// The gate: a free loopback port forwarding to `127.0.0.1:<backend>`.
pub struct TopicGate {
    /// The port clients connect to.
    pub port: u16,
    refusing: Arc<AtomicBool>,
}

impl TopicGate {
    /// Starts a gate in front of `backend`, refusing topic creation.
    pub fn start(backend: u16) -> TopicGate {
        let refusing = Arc::new(AtomicBool::new(true));
        let shared = refusing.clone();
        let port = listen(move |client| forward(client, backend, shared.clone()));
        TopicGate { port, refusing }
    }

    /// Whether CreateTopics is refused from now on.
    pub fn refuse(&self, on: bool) {
        self.refusing.store(on, Ordering::Relaxed);
    }
}

/// Forwards whole frames both ways; a refused CreateTopics is answered here. librdkafka finds
/// a response by its correlation id, so the answer may overtake responses still due.
async fn forward(client: TcpStream, backend: u16, refusing: Arc<AtomicBool>) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", backend)).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let (to_client, mut for_client) = mpsc::unbounded_channel::<Vec<u8>>();
    let answers = to_client.clone();
    let up = async move {
        while let Some(frame) = read_frame(&mut client_read).await {
            if refusing.load(Ordering::Relaxed) && api_key(&frame) == CREATE_TOPICS {
                if answers.send(refusal(&frame)).is_err() {
                    return;
                }
            } else if server_write.write_all(&frame).await.is_err() {
                return;
            }
        }
    };
    let down = async move {
        while let Some(frame) = read_frame(&mut server_read).await {
            if to_client.send(frame).is_err() {
                return;
            }
        }
    };
    let write = async move {
        while let Some(frame) = for_client.recv().await {
            if client_write.write_all(&frame).await.is_err() {
                return;
            }
        }
    };
    // Either side closing or failing ends the connection.
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = write => {}
    }
}

/// One frame, its 4-byte size included; `None` when the peer closed.
async fn read_frame(from: &mut OwnedReadHalf) -> Option<Vec<u8>> {
    let mut size = [0u8; 4];
    from.read_exact(&mut size).await.ok()?;
    let mut frame = size.to_vec();
    frame.resize(4 + i32::from_be_bytes(size) as usize, 0);
    from.read_exact(&mut frame[4..]).await.ok()?;
    Some(frame)
}

fn api_key(frame: &[u8]) -> i16 {
    i16::from_be_bytes([frame[4], frame[5]])
}

/// The response to a CreateTopics request (versions 0-4, all librdkafka sends): every topic
/// refused.
fn refusal(request: &[u8]) -> Vec<u8> {
    let mut r = Reader(&request[4..]);
    r.i16(); // API key
    let version = r.i16();
    assert!(
        (0..=4).contains(&version),
        "the gate reads CreateTopics v0-4, not v{version}"
    );
    let correlation_id = r.i32();
    r.nullable_bytes(); // client id
    let mut names = Vec::new();
    for _ in 0..r.i32() {
        names.push(r.nullable_bytes().expect("a topic name").to_vec());
        r.i32(); // partitions
        r.i16(); // replication factor
        for _ in 0..r.i32() {
            r.i32(); // partition
            for _ in 0..r.i32() {
                r.i32(); // broker id
            }
        }
        for _ in 0..r.i32() {
            r.nullable_bytes(); // config name
            r.nullable_bytes(); // config value
        }
    }
    let mut body = correlation_id.to_be_bytes().to_vec();
    if version >= 2 {
        body.extend(0i32.to_be_bytes()); // throttle time
    }
    body.extend((names.len() as i32).to_be_bytes());
    for name in names {
        body.extend((name.len() as i16).to_be_bytes());
        body.extend(name);
        body.extend(TOPIC_AUTHORIZATION_FAILED.to_be_bytes());
        if version >= 1 {
            body.extend((-1i16).to_be_bytes()); // no message
        }
    }
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend(body);
    frame
}

/// Reads Kafka's big-endian, non-flexible encoding.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }

    fn i16(&mut self) -> i16 {
        i16::from_be_bytes(self.take(2).try_into().unwrap())
    }

    fn i32(&mut self) -> i32 {
        i32::from_be_bytes(self.take(4).try_into().unwrap())
    }

    /// A string of 2-byte size, -1 for null.
    fn nullable_bytes(&mut self) -> Option<&'a [u8]> {
        let size = self.i16();
        (size >= 0).then(|| self.take(size as usize))
    }
}
