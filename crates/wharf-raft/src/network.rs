//! The calling half of the Raft transport: each RPC is an HTTPS POST to the target manager's
//! `/raft/<rpc>` with a postcard body, over a mutual-TLS client that presents this node's
//! certificate. A snapshot streams its file as the body, with the vote and snapshot metadata
//! in a header. The answering half is [`crate::transport`], which the HTTP crate mounts.

use std::fs::File;
use std::future::Future;

use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest, TransferLeaderResponse,
    VoteRequest, VoteResponse,
};
use openraft::type_config::alias::{SnapshotOf, VoteOf};
use openraft::{BasicNode, OptionalSend};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::transport::{Rpc, SNAPSHOT_META_HEADER, SNAPSHOT_PATH, SnapshotHeader};
use crate::{NodeId, TypeConfig};

/// Makes connections to other managers.
#[derive(Clone)]
pub struct Network {
    client: reqwest::Client,
}

impl Network {
    /// A transport whose client trusts the cluster CA and presents this node's certificate,
    /// connecting from `source` if given (the address this node serves at, so that other
    /// managers and firewalls see the node's own address).
    pub fn new(tls: rustls::ClientConfig, source: Option<std::net::IpAddr>) -> Result<Network, reqwest::Error> {
        Ok(Network { client: node_client(tls, source)? })
    }
}

/// The HTTPS client for calls to other managers.
pub(crate) fn node_client(
    tls: rustls::ClientConfig,
    source: Option<std::net::IpAddr>,
) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .local_address(source)
        .connect_timeout(std::time::Duration::from_secs(1))
        .build()
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Connection {
        Connection { client: self.client.clone(), target, base: format!("https://{}", node.addr) }
    }
}

/// RPCs to one manager.
pub struct Connection {
    client: reqwest::Client,
    target: NodeId,
    base: String,
}

fn unreachable(e: impl std::error::Error + 'static) -> RPCError<TypeConfig> {
    RPCError::Unreachable(Unreachable::new(&e))
}

fn network(e: impl std::error::Error + 'static) -> RPCError<TypeConfig> {
    RPCError::Network(NetworkError::new(&e))
}

/// An error the other end reported as text.
#[derive(Debug, thiserror::Error)]
#[error("manager {target} answered {status}: {message}")]
struct Refused {
    target: NodeId,
    status: u16,
    message: String,
}

impl Connection {
    async fn read<Resp: DeserializeOwned>(&self, response: reqwest::Response) -> Result<Resp, RPCError<TypeConfig>> {
        let status = response.status();
        let body = response.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            let message = String::from_utf8_lossy(&body).chars().take(500).collect();
            return Err(network(Refused { target: self.target, status: status.as_u16(), message }));
        }
        postcard::from_bytes(&body).map_err(network)
    }

    /// POSTs `request` to `/raft/<rpc>` and decodes the answer.
    async fn post<Req: Serialize, Answer: DeserializeOwned>(
        &self,
        rpc: Rpc,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Answer, RPCError<TypeConfig>> {
        let body = postcard::to_allocvec(request).map_err(network)?;
        let send =
            self.client.post(format!("{}{}", self.base, rpc.path())).timeout(option.hard_ttl()).body(body).send();
        let response = send.await.map_err(unreachable)?;
        self.read(response).await
    }

    /// An RPC whose answer carries openraft's own error.
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        rpc: Rpc,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        let answer: Result<Resp, openraft::errors::RaftError<TypeConfig>> = self.post(rpc, request, option).await?;
        answer.map_err(network)
    }

    /// An error the other end reported as text in a successful answer.
    fn refused(&self, message: String) -> RPCError<TypeConfig> {
        network(Refused { target: self.target, status: 200, message })
    }
}

impl RaftNetworkV2<TypeConfig> for Connection {
    type SnapshotData = File;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(Rpc::Append, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(Rpc::Vote, &rpc, &option).await
    }

    /// Asks the target to take over as leader (a demoted leader hands over this way).
    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        let answer: Result<TransferLeaderResponse<TypeConfig>, String> =
            self.post(Rpc::Transfer, &req, &option).await?;
        answer.map_err(|message| self.refused(message))
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, File>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let meta = SnapshotHeader::encode(vote, snapshot.meta).map_err(network)?;
        let file = tokio::fs::File::from_std(snapshot.snapshot);
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        let send = self
            .client
            .post(format!("{}{SNAPSHOT_PATH}", self.base))
            .header(SNAPSHOT_META_HEADER, meta)
            .body(body)
            .send();
        let response = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            response = send => response.map_err(unreachable)?,
        };
        let answer: Result<SnapshotResponse<TypeConfig>, String> = self.read(response).await?;
        answer.map_err(|message| StreamingError::from(self.refused(message)))
    }
}
