//! [`RaftProposer`]: commands go through Raft. On the leader a command is appended,
//! replicated to a quorum and applied; a follower forwards it to the leader
//! (`POST /raft/propose` over mutual TLS) and returns the leader's answer. Without a leader or
//! a quorum the proposal fails with [`StoreError::Unavailable`] after [`PROPOSE_TIMEOUT`], and
//! nothing is acknowledged.

use std::time::Duration;

use wharf_store::{Command, Outcome, Proposal, Proposer, StoreError, VersionedCommand};

use crate::{Applied, Raft};

/// How long a proposal may wait for a leader and a quorum.
pub const PROPOSE_TIMEOUT: Duration = Duration::from_secs(5);

impl Applied {
    /// What a proposer returns for this result.
    pub fn into_result(self) -> Result<Outcome, StoreError> {
        match self {
            Applied::Done(outcome) => Ok(outcome),
            Applied::Refused(refusal) => Err(refusal.into()),
            Applied::Failed(why) => Err(StoreError::Unavailable(why)),
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
    pub fn new(raft: Raft, tls: rustls::ClientConfig) -> Result<RaftProposer, reqwest::Error> {
        Ok(RaftProposer { raft, client: reqwest::Client::builder().use_preconfigured_tls(tls).build()? })
    }

    /// Appends `command` on this node, which must be the leader, and waits for it to apply.
    /// `Err(Some(addr))` names the leader to forward to.
    pub async fn write_here(&self, command: VersionedCommand) -> Result<Applied, Result<String, String>> {
        match tokio::time::timeout(PROPOSE_TIMEOUT, self.raft.client_write(command)).await {
            Err(_) => Err(Err("timed out waiting for a quorum of managers".into())),
            Ok(Ok(response)) => Ok(response.data),
            Ok(Err(e)) => match e.forward_to_leader() {
                Some(forward) => match &forward.leader_node {
                    Some(node) => Err(Ok(node.addr.clone())),
                    None => Err(Err("no leader is known".into())),
                },
                None => Err(Err(e.to_string())),
            },
        }
    }

    async fn forward(&self, leader: &str, command: &VersionedCommand) -> Result<Applied, StoreError> {
        let unavailable = |e: &dyn std::fmt::Display| StoreError::Unavailable(format!("forward to {leader}: {e}"));
        let body = postcard::to_allocvec(command).map_err(|e| unavailable(&e))?;
        let response = self
            .client
            .post(format!("https://{leader}/raft/propose"))
            .timeout(PROPOSE_TIMEOUT)
            .body(body)
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| unavailable(&e))?;
        if !status.is_success() {
            return Err(unavailable(&format!("{status}: {}", String::from_utf8_lossy(&bytes))));
        }
        let answer: Result<Applied, String> = postcard::from_bytes(&bytes).map_err(|e| unavailable(&e))?;
        answer.map_err(StoreError::Unavailable)
    }
}

impl Proposer for RaftProposer {
    fn propose(&self, command: Command) -> Proposal<'_> {
        Box::pin(async move {
            let command = VersionedCommand::V1(command);
            let applied = match self.write_here(command.clone()).await {
                Ok(applied) => applied,
                Err(Ok(leader)) => self.forward(&leader, &command).await?,
                Err(Err(why)) => return Err(StoreError::Unavailable(why)),
            };
            applied.into_result()
        })
    }
}
