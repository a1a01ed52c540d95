//! Simulation of Wharf's Raft layer (openraft with Wharf's redb log store and state machine)
//! under turmoil: three managers and three clients in simulated time and a simulated network,
//! over many seeds. Each seed draws a schedule of faults: partitions of one manager from the
//! others, crashes and restarts (the files stay, as after a power cut with fsync), and lost
//! and delayed messages. The clients write and read one register: a write replaces the value
//! (`SetJoinToken`, applied through Raft), a read goes through ReadIndex on the leader.
//!
//! Checked for every seed:
//! - election safety: at most one leader per term, over every manager's view of every term;
//! - no committed entry lost, one history: after the faults heal, the committed logs of all
//!   managers agree entry by entry, and every write a client saw acknowledged is in them;
//! - the register's history (invocations and answers in simulated time, timeouts as writes
//!   that may or may not have happened) is linearizable.
//!
//! turmoil seeds the network and the fault schedule. A run is not an exact replay: openraft
//! draws election timeouts from the thread's random generator, and tokio's `select!` picks
//! among ready branches at random. Seeding openraft's generator alone (through a runtime
//! wrapper) was tried, and runs of one seed still differed. A single seed's run prints a
//! trace hash (leaders per term and the timed history) to compare runs by.
//!
//! `WHARF_SIM_SEEDS=N` runs N seeds (default 200); `WHARF_SIM_SEED=S` runs only seed S.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::raft::{AppendEntriesRequest, SnapshotResponse, VoteRequest};
use openraft::storage::{RaftLogReader, RaftLogStorage, Snapshot};
use openraft::type_config::alias::{SnapshotMetaOf, SnapshotOf, VoteOf};
use openraft::{BasicNode, ReadPolicy, ServerState};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turmoil::net::{TcpListener, TcpStream};
use wharf_raft::{LogStore, Raft, StateMachine, TypeConfig};
use wharf_store::{LegacyCommand, Store, VersionedCommand};

const MANAGERS: [&str; 3] = ["m1", "m2", "m3"];
const PORT: u16 = 9000;
const CLIENTS: usize = 3;
const OPS_PER_CLIENT: usize = 20;
/// How long a client waits for an answer before it counts the operation as unknown.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

/// A request on the simulated wire.
#[derive(Serialize, Deserialize)]
enum Request {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<TypeConfig>),
    Snapshot(VoteOf<TypeConfig>, SnapshotMetaOf<TypeConfig>, Vec<u8>),
    Write(String),
    Read,
}

async fn send_frame(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_u32(bytes.len() as u32).await?;
    stream.write_all(bytes).await?;
    stream.flush().await
}

async fn read_frame(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let len = stream.read_u32().await? as usize;
    let mut bytes = vec![0; len];
    stream.read_exact(&mut bytes).await?;
    Ok(bytes)
}

/// One request, one answer, on a new connection.
async fn call<T: for<'de> Deserialize<'de>>(target: &str, request: &Request) -> std::io::Result<T> {
    let mut stream = TcpStream::connect((target, PORT)).await?;
    send_frame(&mut stream, &postcard::to_allocvec(request).map_err(std::io::Error::other)?).await?;
    let answer = read_frame(&mut stream).await?;
    postcard::from_bytes(&answer).map_err(std::io::Error::other)
}

mod network {
    use std::future::Future;

    use openraft::OptionalSend;
    use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
    use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
    use openraft::raft::{AppendEntriesResponse, VoteResponse};

    use super::*;

    /// The Raft transport over turmoil's simulated TCP.
    pub struct SimNetwork;

    pub struct SimConnection {
        target: String,
    }

    impl RaftNetworkFactory<TypeConfig> for SimNetwork {
        type Network = SimConnection;

        async fn new_client(&mut self, _target: u64, node: &BasicNode) -> SimConnection {
            SimConnection { target: node.addr.clone() }
        }
    }

    fn unreachable(e: impl std::error::Error + 'static) -> RPCError<TypeConfig> {
        RPCError::Unreachable(Unreachable::new(&e))
    }

    impl SimConnection {
        async fn rpc<T: for<'de> Deserialize<'de>>(
            &self,
            request: Request,
            option: &RPCOption,
        ) -> Result<T, RPCError<TypeConfig>> {
            match tokio::time::timeout(option.hard_ttl(), call::<T>(&self.target, &request)).await {
                Ok(Ok(answer)) => Ok(answer),
                Ok(Err(e)) => Err(unreachable(e)),
                Err(e) => Err(unreachable(e)),
            }
        }
    }

    impl SimConnection {
        /// An RPC whose answer carries openraft's own error.
        async fn raft_rpc<T: for<'de> Deserialize<'de>>(
            &self,
            request: Request,
            option: &RPCOption,
        ) -> Result<T, RPCError<TypeConfig>> {
            let answer: Result<T, openraft::errors::RaftError<TypeConfig>> = self.rpc(request, option).await?;
            answer.map_err(|e| RPCError::Network(NetworkError::new(&e)))
        }
    }

    impl RaftNetworkV2<TypeConfig> for SimConnection {
        type SnapshotData = std::fs::File;

        async fn append_entries(
            &mut self,
            rpc: AppendEntriesRequest<TypeConfig>,
            option: RPCOption,
        ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
            self.raft_rpc(Request::Append(rpc), &option).await
        }

        async fn vote(
            &mut self,
            rpc: VoteRequest<TypeConfig>,
            option: RPCOption,
        ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
            self.raft_rpc(Request::Vote(rpc), &option).await
        }

        async fn full_snapshot(
            &mut self,
            vote: VoteOf<TypeConfig>,
            snapshot: SnapshotOf<TypeConfig, Self::SnapshotData>,
            cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
            option: RPCOption,
        ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
            let mut file = snapshot.snapshot;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).map_err(|e| StreamingError::from(unreachable(e)))?;
            let request = Request::Snapshot(vote, snapshot.meta, bytes);
            let answer: Result<SnapshotResponse<TypeConfig>, String> = tokio::select! {
                closed = cancel => return Err(StreamingError::Closed(closed)),
                answer = self.rpc(request, &option) => answer?,
            };
            answer.map_err(|e| StreamingError::from(unreachable(std::io::Error::other(e))))
        }
    }
}

/// What the simulation records, shared by every host.
#[derive(Default)]
struct Record {
    /// Term -> the manager that led it, as each manager saw itself.
    leaders: BTreeMap<u64, u64>,
    /// A second leader of a term, if one ever appeared.
    violation: Option<String>,
    /// The register's history.
    history: Vec<Op>,
}

#[derive(Debug, Clone)]
struct Op {
    /// Which client (for reading a failure).
    client: usize,
    /// `Some(value)` for a write, `None` for a read.
    write: Option<String>,
    invoked: Duration,
    /// `None` if no answer came: the operation may or may not have taken effect.
    answered: Option<Duration>,
    /// What a read returned.
    read: Option<Option<String>>,
}

fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

fn raft_config() -> Arc<openraft::Config> {
    wharf_raft::config("simulation").expect("raft config")
}

async fn serve(raft: Raft, store: Arc<Store>, dir: PathBuf, mut stream: TcpStream) -> std::io::Result<()> {
    let request: Request = postcard::from_bytes(&read_frame(&mut stream).await?).map_err(std::io::Error::other)?;
    let answer = match request {
        Request::Append(rpc) => postcard::to_allocvec(&raft.append_entries(rpc).await),
        Request::Vote(rpc) => postcard::to_allocvec(&raft.vote(rpc).await),
        Request::Snapshot(vote, meta, bytes) => {
            let path = dir.join(format!("incoming-{}", now().as_nanos()));
            std::fs::write(&path, &bytes)?;
            let file = std::fs::File::open(&path)?;
            std::fs::remove_file(&path)?;
            let result = raft.install_full_snapshot(vote, Snapshot { meta, snapshot: file }).await;
            postcard::to_allocvec(&result.map_err(|e| e.to_string()))
        }
        Request::Write(value) => {
            let command = VersionedCommand::V1(LegacyCommand::SetJoinToken { role: "register".into(), token: value });
            let result = raft.client_write(command).await.map(|_| ()).map_err(|e| e.to_string());
            postcard::to_allocvec(&result)
        }
        Request::Read => {
            let result = match raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
                Ok(_) => store.legacy_join_token("register").map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            postcard::to_allocvec(&result)
        }
    };
    send_frame(&mut stream, &answer.map_err(std::io::Error::other)?).await
}

/// A manager: opens its files (again, after a crash), starts Raft, records what it leads,
/// and serves.
async fn manager(id: u64, dir: PathBuf, record: Arc<Mutex<Record>>) -> turmoil::Result {
    let log = LogStore::open(&dir.join("raft-log.redb"))?;
    let store = Arc::new(Store::open(&dir.join("state.redb"))?);
    let sm = StateMachine::open(Arc::clone(&store), &dir.join("snapshots"))?;
    let raft = Raft::new(id, raft_config(), network::SimNetwork, log, sm).await?;
    if id == 1 && !raft.is_initialized().await? {
        let members: BTreeMap<u64, BasicNode> =
            MANAGERS.iter().enumerate().map(|(i, name)| (i as u64 + 1, BasicNode::new(*name))).collect();
        raft.initialize(members).await?;
    }
    let mut metrics = raft.metrics();
    tokio::spawn(async move {
        use openraft::type_config::async_runtime::WatchReceiver;
        while metrics.changed().await.is_ok() {
            let m = metrics.borrow_watched().clone();
            if m.state == ServerState::Leader {
                let mut record = record.lock().expect("record");
                let term = m.current_term;
                match record.leaders.get(&term) {
                    Some(other) if *other != id => {
                        record.violation = Some(format!("term {term} has two leaders: {other} and {id}"));
                    }
                    _ => {
                        record.leaders.insert(term, id);
                    }
                }
            }
        }
    });
    let listener = TcpListener::bind(("0.0.0.0", PORT)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(serve(raft.clone(), Arc::clone(&store), dir.clone(), stream));
    }
}

/// A client: writes unique values and reads, each time at a manager of its choosing.
async fn client(n: usize, seed: u64, record: Arc<Mutex<Record>>) -> turmoil::Result {
    let mut rng = Rng(seed ^ (n as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    for i in 0..OPS_PER_CLIENT {
        tokio::time::sleep(Duration::from_millis(50 + rng.below(400))).await;
        let target = MANAGERS[rng.below(MANAGERS.len() as u64) as usize];
        let write = (rng.below(2) == 0).then(|| format!("c{n}-{i}"));
        let invoked = now();
        let request = match &write {
            Some(value) => Request::Write(value.clone()),
            None => Request::Read,
        };
        let mut op = Op { client: n, write: write.clone(), invoked, answered: None, read: None };
        match write {
            Some(_) => {
                let answer = tokio::time::timeout(CLIENT_TIMEOUT, call::<Result<(), String>>(target, &request)).await;
                // Without an acknowledgement (refused, or no answer) it may still apply later, so
                // it stays open.
                if let Ok(Ok(Ok(()))) = answer {
                    op.answered = Some(now());
                }
            }
            None => {
                let answer =
                    tokio::time::timeout(CLIENT_TIMEOUT, call::<Result<Option<String>, String>>(target, &request));
                if let Ok(Ok(Ok(value))) = answer.await {
                    op.answered = Some(now());
                    op.read = Some(value);
                }
            }
        }
        // A read without an answer says nothing; it is left out.
        if op.write.is_some() || op.answered.is_some() {
            record.lock().expect("record").history.push(op);
        }
    }
    Ok(())
}

/// A small seeded generator for the fault schedule and the clients' choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Whether the register history is linearizable: a search (Wing and Gong, with the set of
/// done operations and the value memoized) for an order that respects real time, in which
/// every read returns the last write before it. Writes without an answer may be placed
/// anywhere after their invocation, or left out.
fn linearizable(history: &[Op]) -> Result<(), String> {
    // A write without an answer that no read saw may be left out of every order: leaving it
    // out changes no read. Only the others are searched.
    let seen_values: HashSet<&str> =
        history.iter().filter_map(|op| op.read.as_ref()).filter_map(|read| read.as_deref()).collect();
    let history: Vec<Op> = history
        .iter()
        .filter(|op| op.answered.is_some() || op.write.as_deref().is_some_and(|v| seen_values.contains(v)))
        .cloned()
        .collect();
    let history = history.as_slice();
    let n = history.len();
    assert!(n <= 128, "history too long for the search");
    let mut seen: HashSet<(u128, Option<String>)> = HashSet::new();
    /// States the search may visit: a linearizable history is found in far fewer; a history
    /// that is not would otherwise make the search try every order of its open writes.
    const BUDGET: usize = 200_000;
    let required: u128 =
        history.iter().enumerate().filter(|(_, op)| op.answered.is_some()).fold(0, |m, (i, _)| m | 1 << i);
    fn search(
        history: &[Op],
        required: u128,
        done: u128,
        value: Option<String>,
        seen: &mut HashSet<(u128, Option<String>)>,
    ) -> bool {
        if done & required == required {
            return true;
        }
        if seen.len() > BUDGET || !seen.insert((done, value.clone())) {
            return false;
        }
        // The earliest answer among operations not done: nothing invoked after it may go first.
        let horizon = history
            .iter()
            .enumerate()
            .filter(|(i, _)| done & (1 << i) == 0)
            .filter_map(|(_, op)| op.answered)
            .min()
            .unwrap_or(Duration::MAX);
        for (i, op) in history.iter().enumerate() {
            if done & (1 << i) != 0 || op.invoked > horizon {
                continue;
            }
            let next = match (&op.write, &op.read) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(read)) if *read == value => value.clone(),
                _ => continue,
            };
            if search(history, required, done | 1 << i, next, seen) {
                return true;
            }
        }
        false
    }
    if search(history, required, 0, None, &mut seen) {
        return Ok(());
    }
    let mut ops: Vec<&Op> = history.iter().collect();
    ops.sort_by_key(|op| op.invoked);
    let lines: Vec<String> = ops
        .into_iter()
        .map(|op| {
            let answered = op.answered.map_or("open".to_owned(), |t| format!("{t:?}"));
            let what = match (&op.write, &op.read) {
                (Some(v), _) => format!("write {v}"),
                (None, read) => format!("read -> {:?}", read.clone().flatten()),
            };
            format!("  client {} {:?} .. {answered}: {what}", op.client, op.invoked)
        })
        .collect();
    let verdict = if seen.len() > BUDGET {
        format!("no linear order found within {BUDGET} states")
    } else {
        "not linearizable".to_owned()
    };
    Err(format!("{verdict}:\n{}", lines.join("\n")))
}

/// The committed entries of a manager's log, read from its files after the simulation.
async fn committed_log(dir: &Path) -> Vec<(openraft::type_config::alias::LogIdOf<TypeConfig>, String)> {
    let mut log = LogStore::open(&dir.join("raft-log.redb")).expect("open log");
    let committed = log.read_committed().await.expect("committed").map_or(0, |id| id.index);
    let mut reader = log.get_log_reader().await;
    let entries = reader.try_get_log_entries(0..committed + 1).await.expect("entries");
    entries
        .into_iter()
        .map(|e| {
            let payload = match e.payload {
                openraft::EntryPayload::Normal(VersionedCommand::V1(LegacyCommand::SetJoinToken { token, .. })) => {
                    format!("write {token}")
                }
                openraft::EntryPayload::Normal(command) => command.to_string(),
                openraft::EntryPayload::Membership(m) => format!("membership {m:?}"),
                openraft::EntryPayload::Blank => "blank".into(),
            };
            (e.log_id, payload)
        })
        .collect()
}

/// What one seed did.
#[derive(Default)]
struct Tally {
    faults: usize,
    terms: usize,
    answered: usize,
    /// A hash of the seed's leaders per term and timed history: equal for two runs of one seed
    /// when the run replays exactly.
    trace: u64,
}

fn run_seed(seed: u64) -> Result<Tally, String> {
    let tmp = tempfile::tempdir_in(sim_dir()).expect("tempdir");
    let record = Arc::new(Mutex::new(Record::default()));
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(120))
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(20))
        .fail_rate(0.002)
        .repair_rate(0.2)
        .rng_seed(seed)
        .build();
    for (i, name) in MANAGERS.iter().enumerate() {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let record = Arc::clone(&record);
        sim.host(*name, move || manager(i as u64 + 1, dir.clone(), Arc::clone(&record)));
    }
    for n in 0..CLIENTS {
        sim.client(format!("c{n}"), client(n, seed, Arc::clone(&record)));
    }
    // The fault schedule: every 200-700 ms of simulated time, heal what is broken or break
    // something new.
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let crashed: Rc<RefCell<Vec<&str>>> = Rc::default();
    let mut partitioned: Option<&str> = None;
    let mut next_fault = Duration::from_millis(500);
    let mut faults = 0;
    loop {
        let finished = sim.step().map_err(|e| format!("seed {seed}: simulation failed: {e}"))?;
        if finished {
            break;
        }
        if sim.elapsed() < next_fault {
            continue;
        }
        next_fault = sim.elapsed() + Duration::from_millis(200 + rng.below(500));
        let victim = MANAGERS[rng.below(3) as usize];
        match rng.below(4) {
            0 if partitioned.is_none() => {
                for other in MANAGERS.iter().filter(|m| **m != victim) {
                    sim.partition(victim, *other);
                }
                partitioned = Some(victim);
                faults += 1;
            }
            1 if crashed.borrow().is_empty() => {
                sim.crash(victim);
                crashed.borrow_mut().push(victim);
                faults += 1;
            }
            _ => {
                if let Some(p) = partitioned.take() {
                    for other in MANAGERS.iter().filter(|m| **m != p) {
                        sim.repair(p, *other);
                    }
                }
                for c in crashed.borrow_mut().drain(..) {
                    sim.bounce(c);
                }
            }
        }
    }
    // Heal everything and let the managers settle before their files are read.
    if let Some(p) = partitioned.take() {
        for other in MANAGERS.iter().filter(|m| **m != p) {
            sim.repair(p, *other);
        }
    }
    for c in crashed.borrow_mut().drain(..) {
        sim.bounce(c);
    }
    sim.set_fail_rate(0.0);
    let settle = sim.elapsed() + Duration::from_secs(5);
    sim.client("settle", async move {
        while now() < settle {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // A last write through whichever manager leads commits every earlier entry everywhere.
        for _ in 0..50 {
            for target in MANAGERS {
                let written = call::<Result<(), String>>(target, &Request::Write("final".into())).await;
                if matches!(written, Ok(Ok(()))) {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err("no manager accepted the final write".into())
    });
    sim.run().map_err(|e| format!("seed {seed}: settling failed: {e}"))?;
    drop(sim);

    let record = std::mem::take(&mut *record.lock().expect("record"));
    if let Some(violation) = record.violation {
        return Err(format!("seed {seed}: election safety: {violation}"));
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let logs: Vec<_> = MANAGERS.iter().map(|m| runtime.block_on(committed_log(&tmp.path().join(m)))).collect();
    for (i, log) in logs.iter().enumerate().skip(1) {
        let common = log.len().min(logs[0].len());
        if log[..common] != logs[0][..common] {
            return Err(format!("seed {seed}: the committed logs of m1 and {} differ", MANAGERS[i]));
        }
    }
    // Every acknowledged write is committed on every manager once the faults heal.
    for (i, log) in logs.iter().enumerate() {
        let writes: HashSet<&str> = log.iter().filter_map(|(_, p)| p.strip_prefix("write ")).collect();
        for op in record.history.iter().filter(|op| op.answered.is_some()) {
            if let Some(value) = &op.write
                && !writes.contains(value.as_str())
            {
                return Err(format!("seed {seed}: the acknowledged write {value} is not in {}'s log", MANAGERS[i]));
            }
        }
    }
    linearizable(&record.history).map_err(|e| format!("seed {seed}: {e}"))?;
    let answered = record.history.iter().filter(|op| op.answered.is_some()).count();
    let trace = format!("{:?} {:?}", record.leaders, record.history)
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    Ok(Tally { faults, terms: record.leaders.len(), answered, trace })
}

/// Where simulations keep their files: tmpfs when there is one (the simulated managers fsync,
/// and in a simulation that only costs time).
fn sim_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() }
}

/// Runs the seeds of one part of the default 200 (four parts, so that the test runner can run
/// them side by side), or the seeds the environment names.
fn run_part(part: u64) {
    const PARTS: u64 = 4;
    let seeds: Vec<u64> = match std::env::var("WHARF_SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(seed) if seed % PARTS == part => vec![seed],
        Some(_) => Vec::new(),
        None => {
            let count = std::env::var("WHARF_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(200);
            (1..=count).filter(|s| s % PARTS == part).collect()
        }
    };
    if seeds.is_empty() {
        return;
    }
    let mut total = Tally::default();
    let mut failures = Vec::new();
    for seed in &seeds {
        match run_seed(*seed) {
            Ok(tally) if seeds.len() == 1 => {
                eprintln!(
                    "seed {seed}: {} faults, {} leader terms, {} acknowledged operations, trace {:016x}",
                    tally.faults, tally.terms, tally.answered, tally.trace
                );
                total = tally;
            }
            Ok(tally) => {
                total.faults += tally.faults;
                total.terms += tally.terms;
                total.answered += tally.answered;
            }
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{} of {} seeds failed:\n{}", failures.len(), seeds.len(), failures.join("\n"));
    let n = seeds.len();
    assert!(total.faults >= 2 * n, "the schedules injected too few faults ({} over {n} seeds)", total.faults);
    assert!(total.terms > n, "faults never forced a new election ({} terms over {n} seeds)", total.terms);
    eprintln!(
        "{n} seeds: {} faults, {} leader terms, {} acknowledged operations; every term had one leader, \
         every acknowledged write is committed everywhere, every history is linearizable",
        total.faults, total.terms, total.answered
    );
}

#[test]
fn raft_under_seeded_faults_part_1() {
    run_part(1);
}

#[test]
fn raft_under_seeded_faults_part_2() {
    run_part(2);
}

#[test]
fn raft_under_seeded_faults_part_3() {
    run_part(3);
}

#[test]
fn raft_under_seeded_faults_part_4() {
    run_part(0);
}
