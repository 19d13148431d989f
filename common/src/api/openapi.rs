//! OpenAPI schemas of the wire types whose serde is hand-written (feature
//! `openapi`): they are all JSON strings, with the shape their parsers
//! accept. The derived schemas of the other wire types refer to these by
//! name.

use std::borrow::Cow;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use super::{Base64, SecretText};
use crate::crypto::name::NameTag;
use crate::ids::{NodeId, ObjectId};

/// A string schema with a description and an optional pattern.
fn string(description: &str, pattern: Option<&str>, example: Option<&str>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .pattern(pattern)
        .examples(example)
        .into()
}

macro_rules! string_schema {
    ($ty:ty, $name:literal, $description:expr, $pattern:expr, $example:expr) => {
        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                string($description, $pattern, $example)
            }
        }

        impl ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

string_schema!(
    NodeId,
    "NodeId",
    "A node id: 16 client-chosen random bytes as 32 lowercase hex digits (the root is all zero).",
    Some("^[0-9a-fA-F]{32}$"),
    Some("00000000000000000000000000000000")
);
string_schema!(
    ObjectId,
    "ObjectId",
    "An object id: 16 client-chosen random bytes as 32 lowercase hex digits.",
    Some("^[0-9a-fA-F]{32}$"),
    Some("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
);
string_schema!(
    NameTag,
    "NameTag",
    "The keyed tag of a name in its directory: 32 bytes as 64 hex digits. The server indexes names by it and never sees them.",
    Some("^[0-9a-fA-F]{64}$"),
    None
);
string_schema!(
    Base64,
    "Base64",
    "Opaque bytes (ciphertext, wrapped keys, auth keys) as unpadded base64url.",
    Some("^[A-Za-z0-9_-]*$"),
    None
);
string_schema!(
    SecretText,
    "SecretText",
    "A secret string (token, ticket, one-time code, TOTP secret).",
    None,
    None
);
