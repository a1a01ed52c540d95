//! [`RaftProposer`]: commands go through Raft. On the leader a command is appended,
//! replicated to a quorum and applied; a follower forwards it to the leader
//! (`POST /raft/propose` over mutual TLS) and returns the leader's answer. Without a leader or
//! a quorum the proposal fails with [`ProposeError::Unavailable`] after [`PROPOSE_TIMEOUT`], and
//! nothing is acknowledged.

use std::time::Duration;

use wharf_store::{CatchUp, Command, Entry, Origin, Outcome, Proposal, ProposeError, Proposer, VersionedCommand};

use crate::transport::Rpc;
use crate::{Applied, Raft};

/// How long a proposal may wait for a leader and a quorum.
pub const PROPOSE_TIMEOUT: Duration = Duration::from_secs(5);

impl Applied {
    /// What a proposer returns for this result.
    pub fn into_result(self) -> Result<Outcome, ProposeError> {
        match self {
            Applied::Done(outcome) => Ok(outcome),
            Applied::Refused(refusal) => Err(refusal.into()),
            Applied::Failed(why) => Err(ProposeError::Unavailable(why)),
            Applied::Nothing => Ok(Outcome::Done),
        }
    }
}

/// Proposes commands to the cluster through the local Raft instance.
pub struct RaftProposer {
    raft: Raft,
    /// A mutual-TLS client for forwarding to the leader.
    client: reqwest::Client,
}

impl RaftProposer {
    /// A proposer over `raft` whose forwarding client connects from `source` if given (see
    /// [`crate::Network::new`]).
    pub fn new(
        raft: Raft,
        tls: rustls::ClientConfig,
        source: Option<std::net::IpAddr>,
    ) -> Result<RaftProposer, reqwest::Error> {
        Ok(RaftProposer { raft, client: crate::network::node_client(tls, source)? })
    }

    /// Appends `command` on this node, which must be the leader, and waits for it to apply;
    /// returns the result and the entry's log index. `Err(Ok(addr))` names the leader to
    /// forward to.
    pub async fn write_here(&self, command: VersionedCommand) -> Result<(Applied, u64), Result<String, String>> {
        if crate::leadership(&self.raft) == crate::Leadership::Isolated {
            return Err(Err(ISOLATED.into()));
        }
        match tokio::time::timeout(PROPOSE_TIMEOUT, self.raft.client_write(command)).await {
            Err(_) => Err(Err("timed out waiting for a quorum of managers".into())),
            Ok(Ok(response)) => Ok((response.data, response.log_id.index)),
            Ok(Err(e)) => Err(redirect(e.forward_to_leader(), &e)),
        }
    }

    /// Sends `command` to the leader and waits until this replica has applied it (read your
    /// writes: the caller reads this replica next). `Err(None)` means it never reached the
    /// leader (the connection failed), so sending it again cannot apply it twice.
    async fn forward(&self, leader: &str, command: &VersionedCommand) -> Result<Applied, Option<ProposeError>> {
        let body = postcard::to_allocvec(command)
            .map_err(|e| Some(ProposeError::Unavailable(format!("encode a command for {leader}: {e}"))))?;
        let (applied, index): (Applied, u64) = self.ask_leader(leader, Rpc::Propose, body).await?;
        self.applied_here(index).await.map_err(Some)?;
        Ok(applied)
    }

    /// POSTs `body` to the leader's `/raft/<rpc>` and decodes its postcard answer, a
    /// `Result<T, String>`. `Err(None)` means the request never reached the leader.
    async fn ask_leader<T: serde::de::DeserializeOwned>(
        &self,
        leader: &str,
        rpc: Rpc,
        body: Vec<u8>,
    ) -> Result<T, Option<ProposeError>> {
        let name = rpc.name();
        let unavailable =
            |e: &dyn std::fmt::Display| Some(ProposeError::Unavailable(format!("{name} on {leader}: {e}")));
        let url = format!("https://{leader}{}", rpc.path());
        let sent = self.client.post(url).timeout(PROPOSE_TIMEOUT).body(body).send().await;
        let response = match sent {
            Ok(r) => r,
            Err(e) if e.is_connect() => return Err(None),
            Err(e) => return Err(unavailable(&e)),
        };
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| unavailable(&e))?;
        if !status.is_success() {
            return Err(unavailable(&format!("{status}: {}", String::from_utf8_lossy(&bytes))));
        }
        let answer: Result<T, String> = postcard::from_bytes(&bytes).map_err(|e| unavailable(&e))?;
        answer.map_err(|why| Some(ProposeError::Unavailable(why)))
    }

    /// Waits until this replica has applied the entry at `index`.
    async fn applied_here(&self, index: u64) -> Result<(), ProposeError> {
        let wait = self.raft.wait(Some(PROPOSE_TIMEOUT));
        let applied = wait.applied_index_at_least(Some(index), "caught up with the leader").await;
        applied.map(|_| ()).map_err(|e| ProposeError::Unavailable(e.to_string()))
    }

    /// On the leader: confirms the leadership with a quorum (ReadIndex) and returns the log
    /// index a replica must have applied for a read to be current. `Err(Ok(addr))` names the
    /// leader to ask instead.
    pub async fn read_index_here(&self) -> Result<u64, Result<String, String>> {
        if crate::leadership(&self.raft) == crate::Leadership::Isolated {
            return Err(Err(ISOLATED.into()));
        }
        let linearize = self.raft.ensure_linearizable(openraft::ReadPolicy::ReadIndex);
        match tokio::time::timeout(PROPOSE_TIMEOUT, linearize).await {
            Err(_) => Err(Err("timed out confirming the leadership with a quorum".into())),
            Ok(Ok(read)) => Ok(read.index()),
            Ok(Err(e)) => Err(redirect(e.forward_to_leader(), &e)),
        }
    }
}

impl Proposer for RaftProposer {
    /// Proposes on this node or forwards to the leader (see [`on_the_leader`]), as an entry
    /// that keeps `origin` and the time.
    fn propose_command(&self, origin: Origin, command: Command) -> Proposal<'_> {
        Box::pin(async move {
            let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let command = &VersionedCommand::V2(Entry { origin, at, command });
            let applied = on_the_leader(
                || Box::pin(async move { self.write_here(command.clone()).await.map(|(applied, _)| applied) }),
                |leader| Box::pin(async move { self.forward(&leader, command).await }),
            )
            .await?;
            applied.into_result()
        })
    }

    /// ReadIndex: the leader confirms it still leads and names its commit index; this
    /// replica then waits until it has applied that far (on the leader, confirming waits for
    /// the local apply already).
    fn catch_up(&self) -> CatchUp<'_> {
        Box::pin(on_the_leader(
            move || Box::pin(async move { self.read_index_here().await.map(|_| ()) }),
            move |leader| {
                Box::pin(async move {
                    let index: u64 = self.ask_leader(&leader, Rpc::ReadIndex, Vec::new()).await?;
                    self.applied_here(index).await.map_err(Some)
                })
            },
        ))
    }
}

/// One attempt of [`on_the_leader`].
type Step<'a, T, E> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, E>> + Send + 'a>>;

/// `Err(Ok(leader address))` when openraft says to ask the leader, else `Err(Err(why))`.
fn redirect(
    forward: Option<&openraft::errors::ForwardToLeader<crate::TypeConfig>>,
    e: &dyn std::fmt::Display,
) -> Result<String, String> {
    match forward {
        Some(forward) => match &forward.leader_node {
            Some(node) => Ok(node.addr.clone()),
            None => Err(NO_LEADER.into()),
        },
        None => Err(e.to_string()),
    }
}

/// Does `here` on this node, or, when it names the leader, `there` with the leader's address.
/// While no leader is known (an election is running) or the known one cannot be reached
/// (`there` gives `Err(None)`: nothing reached it, so trying again cannot do anything twice),
/// it tries again until [`PROPOSE_TIMEOUT`]: a failover delays requests rather than failing them.
async fn on_the_leader<'a, T>(
    here: impl Fn() -> Step<'a, T, Result<String, String>>,
    there: impl Fn(String) -> Step<'a, T, Option<ProposeError>>,
) -> Result<T, ProposeError> {
    let deadline = tokio::time::Instant::now() + PROPOSE_TIMEOUT;
    loop {
        let why = match here().await {
            Ok(done) => return Ok(done),
            Err(Ok(leader)) => match there(leader.clone()).await {
                Ok(done) => return Ok(done),
                Err(Some(e)) => return Err(e),
                Err(None) => format!("the leader {leader} cannot be reached"),
            },
            Err(Err(why)) if why == NO_LEADER => why,
            Err(Err(why)) => return Err(ProposeError::Unavailable(why)),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(ProposeError::Unavailable(why));
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

const NO_LEADER: &str = "no leader is known";
const ISOLATED: &str = "this manager leads no quorum: it has lost contact with the other managers";
/// Pause between attempts while a leader is being elected.
const RETRY_PAUSE: Duration = Duration::from_millis(25);
