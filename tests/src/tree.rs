//! The tree endpoints, typed, for one logged-in account: every call answers
//! a [`Resp`] whatever the status; the `mk*` helpers build nodes with
//! made-up opaque records and names (the server never decrypts) and real
//! name tags under a test key.

use common::api::Base64;
use common::api::tree::{
    CommitRequest, CreateNodeRequest, EntrySpec, Kind, LinkRequest, NameTags, NodeIds, NodeInfo,
    RenameMode, RenameRequest, UpdateRecordRequest, paths,
};
use common::crypto::name::{NameTag, name_tag};
use common::crypto::subkeys::NameTagKey;
use common::{NodeId, ObjectId};
use reqwest::Method;
use serde::Serialize;

use crate::client::{Api, Resp};
use crate::server::TestServer;

/// `len` random bytes.
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    getrandom::fill(&mut b).expect("OS randomness");
    b
}

/// A fresh random node id.
pub fn random_node() -> NodeId {
    NodeId::random().expect("OS randomness")
}

/// A fresh random object id.
pub fn random_object() -> ObjectId {
    ObjectId::random().expect("OS randomness")
}

/// A random 32-byte tag.
pub fn random_tag() -> NameTag {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("OS randomness");
    NameTag::from_bytes(b)
}

/// The name-tag key every test account uses.
pub fn tag_key() -> NameTagKey {
    NameTagKey::from_bytes([7u8; 32])
}

/// The real tag of `name` in `parent` under [`tag_key`].
pub fn tag(parent: NodeId, name: &str) -> NameTag {
    name_tag(&tag_key(), parent, name.as_bytes()).expect("a valid name")
}

/// A made-up "encrypted name": opaque bytes the server stores as they are.
pub fn sealed_name() -> Base64 {
    Base64(random_bytes(48))
}

/// A made-up sealed record.
pub fn sealed_record() -> Base64 {
    Base64(random_bytes(96))
}

/// A node created by a `mk*` helper, with where it is.
#[derive(Debug, Clone)]
pub struct Made {
    /// The node as the server answered it.
    pub node: NodeInfo,
    /// Its directory.
    pub parent: NodeId,
    /// Its tag there.
    pub tag: NameTag,
    /// Its encrypted name.
    pub name: Base64,
}

impl Made {
    /// Its id.
    pub fn id(&self) -> NodeId {
        self.node.id
    }
}

/// One account's view of the tree API.
#[derive(Debug, Clone)]
pub struct Vault {
    /// The client.
    pub api: Api,
    /// The access token.
    pub token: String,
}

/// The path of a node route with `{id}` filled in.
pub fn node_path(template: &str, id: impl std::fmt::Display) -> String {
    template.replace("{id}", &id.to_string())
}

/// The path of an entry.
pub fn entry_path(dir: impl std::fmt::Display, tag: impl std::fmt::Display) -> String {
    paths::ENTRY
        .replace("{id}", &dir.to_string())
        .replace("{tag}", &tag.to_string())
}

/// A tag as the wire writes it (64 hex digits).
pub fn tag_hex(tag: &NameTag) -> String {
    data_encoding::HEXLOWER.encode(tag.as_bytes())
}

impl Vault {
    /// A new registered, verified and logged-in account on `srv`.
    pub async fn new(srv: &TestServer, label: &str) -> Self {
        let account = srv.new_account(label).await;
        let logged = srv.login(&account).await;
        Self {
            api: srv.api.clone(),
            token: logged.access,
        }
    }

    fn bearer(&self) -> Option<&str> {
        Some(&self.token)
    }

    /// `PUT path` with a JSON body.
    pub async fn put<T: Serialize + ?Sized>(&self, path: &str, body: &T) -> Resp {
        let bytes = serde_json::to_vec(body).expect("serialize");
        self.api
            .send(
                Method::PUT,
                path,
                Some((bytes, "application/json")),
                self.bearer(),
            )
            .await
    }

    /// `POST path` with a JSON body.
    pub async fn post<T: Serialize + ?Sized>(&self, path: &str, body: &T) -> Resp {
        self.api.post(path, body, self.bearer()).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Resp {
        self.api.get(path, self.bearer()).await
    }

    /// `POST /v1/nodes`.
    pub async fn create(&self, req: &CreateNodeRequest) -> Resp {
        self.post(paths::NODES, req).await
    }

    /// Creates the root (201).
    pub async fn create_root(&self) -> NodeInfo {
        self.create(&CreateNodeRequest {
            id: NodeId::ROOT,
            kind: Kind::Directory,
            record: sealed_record(),
            entry: None,
            objects: Vec::new(),
        })
        .await
        .ok(201)
    }

    /// The request creating `kind` named `name` in `parent`.
    pub fn create_request(parent: NodeId, name: &str, kind: Kind) -> CreateNodeRequest {
        CreateNodeRequest {
            id: random_node(),
            kind,
            record: sealed_record(),
            entry: Some(EntrySpec {
                parent,
                tag: tag(parent, name),
                encrypted_name: sealed_name(),
            }),
            objects: Vec::new(),
        }
    }

    /// Creates `kind` named `name` in `parent` (201).
    pub async fn make(&self, parent: NodeId, name: &str, kind: Kind) -> Made {
        let req = Self::create_request(parent, name, kind);
        let entry = req.entry.clone().expect("an entry");
        let node: NodeInfo = self.create(&req).await.ok(201);
        assert_eq!(node.id, req.id);
        assert_eq!(node.kind, kind);
        assert_eq!(node.version, 1);
        assert_eq!(node.record, req.record);
        Made {
            node,
            parent,
            tag: entry.tag,
            name: entry.encrypted_name,
        }
    }

    /// A directory.
    pub async fn mkdir(&self, parent: NodeId, name: &str) -> Made {
        self.make(parent, name, Kind::Directory).await
    }

    /// A regular file.
    pub async fn mkfile(&self, parent: NodeId, name: &str) -> Made {
        self.make(parent, name, Kind::File).await
    }

    /// `GET /v1/nodes/{id}`.
    pub async fn node(&self, id: NodeId) -> Resp {
        self.get(&node_path(paths::NODE, id)).await
    }

    /// `POST /v1/nodes/batch`.
    pub async fn nodes(&self, ids: &[NodeId]) -> Resp {
        self.post(paths::NODES_BATCH, &NodeIds { ids: ids.to_vec() })
            .await
    }

    /// `PUT /v1/nodes/{id}/record`.
    pub async fn update_record(&self, id: NodeId, expected_version: u64, record: &Base64) -> Resp {
        let req = UpdateRecordRequest {
            expected_version,
            record: record.clone(),
        };
        self.put(&node_path(paths::NODE_RECORD, id), &req).await
    }

    /// `POST /v1/nodes/{id}/commit`.
    pub async fn commit(
        &self,
        id: NodeId,
        expected_version: u64,
        record: &Base64,
        objects: &[ObjectId],
    ) -> Resp {
        let req = CommitRequest {
            expected_version,
            record: record.clone(),
            objects: objects.to_vec(),
        };
        self.post(&node_path(paths::NODE_COMMIT, id), &req).await
    }

    /// `GET /v1/dirs/{id}/entries?after=&limit=`.
    pub async fn list(&self, dir: NodeId, after: Option<&NameTag>, limit: Option<u32>) -> Resp {
        let mut q = Vec::new();
        if let Some(t) = after {
            q.push(format!("after={}", tag_hex(t)));
        }
        if let Some(l) = limit {
            q.push(format!("limit={l}"));
        }
        let mut path = node_path(paths::ENTRIES, dir);
        if !q.is_empty() {
            path.push('?');
            path.push_str(&q.join("&"));
        }
        self.get(&path).await
    }

    /// `GET /v1/dirs/{id}/entries/{tag}`.
    pub async fn lookup(&self, dir: NodeId, tag: &NameTag) -> Resp {
        self.get(&entry_path(dir, tag_hex(tag))).await
    }

    /// `POST /v1/dirs/{id}/lookup`.
    pub async fn lookup_batch(&self, dir: NodeId, tags: &[NameTag]) -> Resp {
        self.post(
            &node_path(paths::LOOKUP_BATCH, dir),
            &NameTags {
                tags: tags.to_vec(),
            },
        )
        .await
    }

    /// `DELETE /v1/dirs/{id}/entries/{tag}?dir=`.
    pub async fn remove(&self, dir: NodeId, tag: &NameTag, is_dir: bool) -> Resp {
        let path = format!("{}?dir={is_dir}", entry_path(dir, tag_hex(tag)));
        self.api.delete(&path, self.bearer()).await
    }

    /// `POST /v1/links`.
    pub async fn link(&self, parent: NodeId, name: &str, child: NodeId) -> Resp {
        let req = LinkRequest {
            entry: EntrySpec {
                parent,
                tag: tag(parent, name),
                encrypted_name: sealed_name(),
            },
            child,
        };
        self.post(paths::LINKS, &req).await
    }

    /// `POST /v1/rename`.
    pub async fn rename(&self, req: &RenameRequest) -> Resp {
        self.post(paths::RENAME, req).await
    }

    /// A rename request of `src_name` in `src` to `dst_name` in `dst`.
    pub fn rename_request(
        src: NodeId,
        src_name: &str,
        dst: NodeId,
        dst_name: &str,
        mode: RenameMode,
    ) -> RenameRequest {
        RenameRequest {
            src_parent: src,
            src_tag: tag(src, src_name),
            dst_parent: dst,
            dst_tag: tag(dst, dst_name),
            dst_encrypted_name: sealed_name(),
            src_encrypted_name: (mode == RenameMode::Exchange).then(sealed_name),
            mode,
        }
    }

    /// `GET /v1/statfs`.
    pub async fn statfs(&self) -> Resp {
        self.get(paths::STATFS).await
    }

    /// `GET /v1/changes?since=&limit=`.
    pub async fn changes(&self, since: i64, limit: Option<u32>) -> Resp {
        let mut path = format!("{}?since={since}", paths::CHANGES);
        if let Some(l) = limit {
            path.push_str(&format!("&limit={l}"));
        }
        self.get(&path).await
    }
}
