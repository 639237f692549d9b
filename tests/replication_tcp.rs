//! Three `Server`s on threads over the TCP transport on 127.0.0.1, real directories: an
//! operator runs an election through `Control` messages, a client's writes are answered only
//! once committed, a write to a follower is refused with the leader's id, a peer's garbage
//! bytes close only that connection, and after `Shutdown` every log holds the same entries.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use bytes::Bytes;
use raftlog::replication::tcp::{Connection, TcpTransport};
use raftlog::replication::{
    Append, ChecksumMachine, ClientOutcome, ControlOp, Envelope, Message, NodeId, NodeStatus,
    Replica, ReplicationOptions, Server,
};
use raftlog::{LogStore, Options, RaftLog, SnapshotStore};

const WAIT: Duration = Duration::from_secs(30);

fn control(addr: SocketAddr, op: ControlOp) -> (bool, NodeStatus) {
    let mut connection = Connection::connect(addr, WAIT).unwrap();
    connection
        .send(&Envelope { from: 0, to: 0, message: Message::Control { request_id: 1, op } })
        .unwrap();
    match connection.receive(WAIT).unwrap().message {
        Message::ControlReply { ok, status, .. } => (ok, status),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_tcp_cluster_commits_writes_through_its_leader() {
    let root = tempfile::tempdir().unwrap();
    let addrs: BTreeMap<NodeId, SocketAddr> = (1..=3)
        .map(|id| (id, TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()))
        .collect();
    let mut servers = Vec::new();
    for (id, addr) in &addrs {
        let (id, addr) = (*id, *addr);
        let peers: BTreeMap<NodeId, SocketAddr> =
            addrs.iter().filter(|(p, _)| **p != id).map(|(p, a)| (*p, *a)).collect();
        let dir = root.path().join(format!("node-{id}"));
        let log =
            RaftLog::new(LogStore::open(dir.join("log"), Options::default()).unwrap()).unwrap();
        let snapshots = SnapshotStore::open(dir.join("snapshots")).unwrap();
        let replica = Replica::open(
            id,
            &[1, 2, 3],
            log,
            snapshots,
            ChecksumMachine::default(),
            ReplicationOptions::default(),
        )
        .unwrap();
        let transport = TcpTransport::bind(addr, &peers).unwrap();
        servers.push(std::thread::spawn(move || {
            Server::new(replica, transport, Duration::from_millis(5))
                .run()
                .unwrap()
                .close()
                .unwrap();
        }));
    }

    // The operator's election: node 2 asks everyone for term 1 and leads it.
    let vote = ControlOp::Vote { term: 1, candidate: 2, last_index: 0, last_term: 0 };
    let granted = addrs.values().filter(|addr| control(**addr, vote.clone()).0).count();
    assert_eq!(granted, 3);
    let (ok, status) = control(addrs[&2], ControlOp::BecomeLeader { term: 1 });
    assert!(ok && status.leader);

    // Garbage on a connection is refused; the node keeps serving.
    let mut garbage = TcpStream::connect(addrs[&2]).unwrap();
    garbage.write_all(&[0xff; 64]).unwrap();

    // A client posing as a leader of a later term is refused: nothing is appended.
    let mut impostor = Connection::connect(addrs[&1], WAIT).unwrap();
    let entries = vec![raftlog::Entry::new(1, 9, "forged")];
    let append = Append { term: 9, prev_index: 0, prev_term: 0, leader_commit: 1, entries };
    impostor.send(&Envelope { from: 0, to: 1, message: Message::Append(append) }).unwrap();
    // A status asked on the same connection is answered after the append was handled.
    let status = Message::Control { request_id: 2, op: ControlOp::Status };
    impostor.send(&Envelope { from: 0, to: 1, message: status }).unwrap();
    match impostor.receive(WAIT).unwrap().message {
        Message::ControlReply { status, .. } => {
            // Term 1, and no entry of term 9 (the leader's no-op of term 1 may be there).
            assert!(status.term == 1 && status.last_term <= 1, "{status:?}");
        }
        other => panic!("unexpected {other:?}"),
    }

    // A write to a follower names the leader once it heard from it.
    let mut follower = Connection::connect(addrs[&1], WAIT).unwrap();
    let write = |request_id: u64| Envelope {
        from: 0,
        to: 0,
        message: Message::ClientWrite {
            request_id,
            payload: Bytes::from(format!("write {request_id}")),
        },
    };
    loop {
        follower.send(&write(0)).unwrap();
        if let Message::ClientReply { outcome, leader, .. } =
            follower.receive(WAIT).unwrap().message
        {
            assert_eq!(outcome, ClientOutcome::NotLeader);
            if leader == 2 {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }

    let mut client = Connection::connect(addrs[&2], WAIT).unwrap();
    for request_id in 1..=200 {
        client.send(&write(request_id)).unwrap();
    }
    let mut committed = BTreeMap::new();
    while committed.len() < 200 {
        match client.receive(WAIT).unwrap().message {
            Message::ClientReply {
                request_id, outcome: ClientOutcome::Committed, index, ..
            } => {
                committed.insert(request_id, index);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let last = *committed.values().max().unwrap();
    // Index 1 is the leader's no-op; the writes follow it in order.
    assert_eq!(committed.values().copied().collect::<Vec<_>>(), (2..=201).collect::<Vec<_>>());
    let leader = control(addrs[&2], ControlOp::Status).1;
    assert!(leader.commit_index >= last);
    for peer in &leader.peers {
        assert!(peer.bytes_sent > 0 && peer.batches_sent > 0, "{peer:?}");
    }

    // Every node holds the same entries once they caught up.
    for (id, addr) in &addrs {
        loop {
            let status = control(*addr, ControlOp::Status).1;
            if status.applied_index >= last {
                break;
            }
            assert!(status.id == *id);
            std::thread::sleep(Duration::from_millis(10));
        }
        control(*addr, ControlOp::Shutdown);
    }
    for server in servers {
        server.join().unwrap();
    }
    let read = |id: u64| {
        let store =
            LogStore::open(root.path().join(format!("node-{id}/log")), Options::default()).unwrap();
        store.entries(1, last + 1, u64::MAX).unwrap()
    };
    let first = read(1);
    assert_eq!(first.len() as u64, last);
    assert_eq!(read(2), first);
    assert_eq!(read(3), first);
}
