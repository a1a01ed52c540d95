//! The answering half of the Raft transport, beside the calling half ([`crate::network`] and
//! the proposer's forwards): which RPCs exist and where (`/raft/<rpc>`), how a request body is
//! decoded, handed to openraft or the proposer, and how the answer is encoded. It is framework
//! neutral: bytes in, bytes out. The HTTP crate mounts it after checking that the caller holds
//! a manager certificate of the cluster, and never touches openraft's message types itself.

use base64::Engine;
use openraft::storage::Snapshot;
use openraft::type_config::alias::{SnapshotMetaOf, VoteOf};
use serde::Serialize;

use crate::{Raft, RaftProposer, TypeConfig};

/// The header that carries `(vote, snapshot meta)`, postcard then base64url, on a snapshot POST.
pub const SNAPSHOT_META_HEADER: &str = "wharf-raft-snapshot";

/// Largest append-entries, vote, transfer or forwarded-command body.
pub const MAX_RPC: usize = 256 << 20;

/// The RPCs a manager answers at `/raft/<rpc>` with a postcard body (a snapshot streams its
/// file instead: [`install_snapshot`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rpc {
    /// openraft's append-entries.
    Append,
    /// openraft's vote.
    Vote,
    /// A leader handing its leadership over.
    Transfer,
    /// A command a follower forwards to the leader.
    Propose,
    /// ReadIndex for a follower's read barrier.
    ReadIndex,
}

impl Rpc {
    pub const ALL: [Rpc; 5] = [Rpc::Append, Rpc::Vote, Rpc::Transfer, Rpc::Propose, Rpc::ReadIndex];

    /// The last segment of its path.
    pub fn name(self) -> &'static str {
        match self {
            Rpc::Append => "append",
            Rpc::Vote => "vote",
            Rpc::Transfer => "transfer",
            Rpc::Propose => "propose",
            Rpc::ReadIndex => "read-index",
        }
    }

    /// Its path, `/raft/<rpc>`.
    pub fn path(self) -> String {
        format!("/raft/{}", self.name())
    }
}

/// The path of the snapshot RPC.
pub const SNAPSHOT_PATH: &str = "/raft/snapshot";

/// A request the transport could not take: the caller answers 400 with it.
#[derive(Debug, thiserror::Error)]
#[error("invalid {what}: {reason}")]
pub struct BadRequest {
    what: &'static str,
    reason: String,
}

/// An answer encoded for the wire. Encoding the transport's own types cannot fail in
/// practice; if it does, the caller gets openraft's view of a broken peer (an unreadable
/// answer), which it retries.
fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).unwrap_or_else(|e| {
        tracing::error!(error = %e, "encoding a raft answer failed");
        Vec::new()
    })
}

fn decode<T: serde::de::DeserializeOwned>(what: &'static str, body: &[u8]) -> Result<T, BadRequest> {
    postcard::from_bytes(body).map_err(|e| BadRequest { what, reason: e.to_string() })
}

/// Answers `rpc` with `body` on this manager: the encoded answer, or why the request was bad.
pub async fn answer(raft: &Raft, proposer: &RaftProposer, rpc: Rpc, body: &[u8]) -> Result<Vec<u8>, BadRequest> {
    let text = |leader_or_why: Result<String, String>| match leader_or_why {
        Ok(leader) => format!("this manager is not the leader any more; the leader is {leader}"),
        Err(why) => why,
    };
    Ok(match rpc {
        Rpc::Append => encode(&raft.append_entries(decode("append-entries message", body)?).await),
        Rpc::Vote => encode(&raft.vote(decode("vote message", body)?).await),
        Rpc::Transfer => {
            let request = decode("transfer-leader message", body)?;
            encode(&raft.handle_transfer_leader(request).await.map_err(|e| e.to_string()))
        }
        Rpc::Propose => {
            // Not forwarded again: if this node is not the leader any more, the follower gets
            // an error and its caller tries again.
            let command = decode("command", body)?;
            encode(&proposer.write_here(command).await.map_err(text))
        }
        Rpc::ReadIndex => encode(&proposer.read_index_here().await.map_err(text)),
    })
}

/// The `(vote, snapshot meta)` a snapshot POST carries in [`SNAPSHOT_META_HEADER`].
pub struct SnapshotHeader {
    vote: VoteOf<TypeConfig>,
    meta: SnapshotMetaOf<TypeConfig>,
}

impl SnapshotHeader {
    pub fn parse(value: &str) -> Result<SnapshotHeader, BadRequest> {
        let bad = |reason: String| BadRequest { what: "snapshot metadata header", reason };
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(value).map_err(|e| bad(e.to_string()))?;
        let (vote, meta) = postcard::from_bytes(&raw).map_err(|e| bad(e.to_string()))?;
        Ok(SnapshotHeader { vote, meta })
    }

    /// The header value for a snapshot of `meta` sent under `vote`.
    pub fn encode(vote: VoteOf<TypeConfig>, meta: SnapshotMetaOf<TypeConfig>) -> Result<String, postcard::Error> {
        let raw = postcard::to_allocvec(&(vote, meta))?;
        Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw))
    }
}

/// Installs the snapshot received into `file` (rewound) and returns the encoded answer.
pub async fn install_snapshot(raft: &Raft, header: SnapshotHeader, file: std::fs::File) -> Vec<u8> {
    let snapshot = Snapshot { meta: header.meta, snapshot: file };
    encode(&raft.install_full_snapshot(header.vote, snapshot).await.map_err(|e| e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rpc_has_its_own_path() {
        let paths: std::collections::HashSet<String> = Rpc::ALL.iter().map(|r| r.path()).collect();
        assert_eq!(paths.len(), Rpc::ALL.len());
        assert!(!paths.contains(SNAPSHOT_PATH));
        assert_eq!(Rpc::ReadIndex.path(), "/raft/read-index");
    }

    #[test]
    fn a_broken_snapshot_header_is_a_bad_request() {
        for bad in ["", "!!!", "AAAA"] {
            assert!(SnapshotHeader::parse(bad).is_err(), "{bad:?}");
        }
    }
}
