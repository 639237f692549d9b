//! TCP transport (std::net, length-prefixed frames of `wire`), so that nodes can be separate
//! processes on separate machines; and `Connection`, a client's or operator's link to a node.
//!
//! Invariants:
//! 1. `send` never blocks the caller on a slow peer: each peer has a bounded queue drained by
//!    its own writer thread, and a frame that finds the queue full is dropped (Raft resends;
//!    `dropped()` counts them). Inbound frames pass through a bounded channel, so a node that
//!    falls behind slows its senders through TCP's own flow control.
//! 2. A frame is decoded (length first, against `FRAME_BYTES_MAX`) before anything acts on
//!    it; a bad frame closes that connection and nothing else.
//! 3. Clients and operators (who send `from = 0`) get a connection id with `CLIENT_BIT` set;
//!    replies addressed to it go back on their connection.

use std::collections::BTreeMap;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::message::{Envelope, NodeId};
use super::wire;
use super::Transport;
use crate::error::Error;

/// Set in the ids the transport gives client and operator connections.
pub const CLIENT_BIT: u64 = 1 << 63;
/// Frames queued per peer before new ones are dropped.
const PEER_QUEUE_FRAMES: usize = 4096;
/// Frames received and not yet taken by the node.
const INBOUND_FRAMES: usize = 8192;

type Clients = Arc<Mutex<BTreeMap<u64, TcpStream>>>;

/// A node's TCP endpoint.
pub struct TcpTransport {
    peers: BTreeMap<NodeId, SyncSender<Vec<u8>>>,
    clients: Clients,
    inbound: Receiver<Envelope>,
    dropped: Arc<AtomicU64>,
    local_addr: SocketAddr,
}

impl TcpTransport {
    /// Listens on `listen` and sends to `peers` (connecting lazily, reconnecting after a
    /// failure).
    pub fn bind(listen: SocketAddr, peers: &BTreeMap<NodeId, SocketAddr>) -> io::Result<Self> {
        let listener = TcpListener::bind(listen)?;
        let local_addr = listener.local_addr()?;
        let (inbound_tx, inbound) = mpsc::sync_channel(INBOUND_FRAMES);
        let clients: Clients = Arc::default();
        let accept_clients = clients.clone();
        let peer_ids: Vec<NodeId> = peers.keys().copied().collect();
        thread::spawn(move || accept(listener, inbound_tx, accept_clients, peer_ids));
        let dropped = Arc::new(AtomicU64::new(0));
        let peers = peers
            .iter()
            .map(|(id, addr)| {
                let (tx, rx) = mpsc::sync_channel(PEER_QUEUE_FRAMES);
                let addr = *addr;
                thread::spawn(move || write_to_peer(addr, rx));
                (*id, tx)
            })
            .collect();
        Ok(TcpTransport { peers, clients, inbound, dropped, local_addr })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Frames dropped because a peer's queue was full or it was unknown.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Transport for TcpTransport {
    fn send(&mut self, envelope: Envelope) {
        let frame = wire::encode(&envelope);
        if envelope.to & CLIENT_BIT != 0 {
            let mut clients =
                self.clients.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(stream) = clients.get_mut(&envelope.to) {
                if stream.write_all(&frame).is_err() {
                    clients.remove(&envelope.to);
                }
            }
            return;
        }
        let sent = self.peers.get(&envelope.to).map(|tx| tx.try_send(frame));
        if !matches!(sent, Some(Ok(()))) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            if let Some(Err(TrySendError::Disconnected(_))) = sent {
                self.peers.remove(&envelope.to);
            }
        }
    }

    fn receive(&mut self, deadline: Instant, out: &mut Vec<Envelope>) {
        let timeout = deadline.saturating_duration_since(Instant::now());
        match self.inbound.recv_timeout(timeout) {
            Ok(envelope) => out.push(envelope),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return,
        }
        while out.len() < INBOUND_FRAMES {
            match self.inbound.try_recv() {
                Ok(envelope) => out.push(envelope),
                Err(_) => return,
            }
        }
    }
}

fn accept(
    listener: TcpListener,
    inbound: SyncSender<Envelope>,
    clients: Clients,
    peers: Vec<NodeId>,
) {
    let next_client = Arc::new(AtomicU64::new(1));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let _ = stream.set_nodelay(true);
        let (inbound, clients, peers) = (inbound.clone(), clients.clone(), peers.clone());
        let next_client = next_client.clone();
        thread::spawn(move || {
            let client_id = CLIENT_BIT | next_client.fetch_add(1, Ordering::Relaxed);
            if let Ok(writer) = stream.try_clone() {
                clients
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(client_id, writer);
            }
            let mut reader = BufReader::with_capacity(1 << 20, &stream);
            while let Ok(Some(mut envelope)) = read_frame(&mut reader) {
                if envelope.from == 0 {
                    envelope.from = client_id;
                } else if !peers.contains(&envelope.from) {
                    break;
                }
                if inbound.send(envelope).is_err() {
                    break;
                }
            }
            clients.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&client_id);
            let _ = stream.shutdown(Shutdown::Both);
        });
    }
}

/// Drains one peer's queue into a connection, reconnecting (after a short pause) when it
/// fails; frames that could not be written are dropped (Raft resends).
fn write_to_peer(addr: SocketAddr, frames: Receiver<Vec<u8>>) {
    let mut stream: Option<BufWriter<TcpStream>> = None;
    while let Ok(frame) = frames.recv() {
        if stream.is_none() {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    stream = Some(BufWriter::with_capacity(1 << 20, s));
                }
                Err(_) => {
                    thread::sleep(Duration::from_millis(20));
                    continue;
                }
            }
        }
        let writer = stream.as_mut().expect("connected above");
        let mut ok = writer.write_all(&frame).is_ok();
        while ok {
            match frames.try_recv() {
                Ok(frame) => ok = writer.write_all(&frame).is_ok(),
                Err(_) => break,
            }
        }
        if !ok || writer.flush().is_err() {
            stream = None;
        }
    }
}

/// Reads one frame; `None` at a clean end of stream. A bad frame is an `InvalidData` error.
pub fn read_frame(reader: &mut impl Read) -> io::Result<Option<Envelope>> {
    let mut prefix = [0u8; 4];
    match reader.read_exact(&mut prefix) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let invalid = |e: Error| io::Error::new(io::ErrorKind::InvalidData, e);
    let len = wire::frame_len(prefix).map_err(invalid)?;
    let mut frame = vec![0u8; len];
    reader.read_exact(&mut frame)?;
    wire::decode(Bytes::from(frame)).map(Some).map_err(invalid)
}

/// A client's or operator's connection to one node: frames out, frames back.
pub struct Connection {
    writer: BufWriter<TcpStream>,
    reader: BufReader<TcpStream>,
    /// The read timeout set on the socket (set again only when it changes: a syscall).
    timeout: Option<Duration>,
}

impl Connection {
    /// Connects to the node at `addr`.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        let reader = BufReader::with_capacity(1 << 16, stream.try_clone()?);
        Ok(Connection { writer: BufWriter::with_capacity(1 << 20, stream), reader, timeout: None })
    }

    /// Queues one frame (sent at the next `flush` or `receive`).
    pub fn send(&mut self, envelope: &Envelope) -> io::Result<()> {
        self.writer.write_all(&wire::encode(envelope))
    }

    /// Sends what is queued.
    pub fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }

    /// Waits at most `timeout` for the next frame (`TimedOut` or `WouldBlock` when none). A
    /// timeout leaves the connection unusable (a frame may be half read): reconnect.
    pub fn receive(&mut self, timeout: Duration) -> io::Result<Envelope> {
        self.writer.flush()?;
        let timeout = Some(timeout.max(Duration::from_millis(1)));
        if self.timeout != timeout {
            self.reader.get_ref().set_read_timeout(timeout)?;
            self.timeout = timeout;
        }
        read_frame(&mut self.reader)?.ok_or_else(|| {
            io::Error::new(io::ErrorKind::UnexpectedEof, "the node closed the connection")
        })
    }
}
