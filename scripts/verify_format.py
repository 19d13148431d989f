#!/usr/bin/env python3
"""Independent check of SecureVault's cryptographic format (docs/FORMAT.md).

This is a second implementation of the format, written from docs/FORMAT.md
(not from the Rust code), using only the `cryptography` package, `argon2-cffi`
and the standard library. It runs every test vector in
common/tests/vectors/*.json:

* valid vectors are decrypted/derived and compared with the expected values,
  then re-encrypted with the vector's fixed salt or seed and compared byte for
  byte;
* fail_* vectors must fail with exactly the error kind named in
  `expect_error`, and must never return plaintext.

A few derived checks follow (range reads, the length formulas, recovery-key
parsing rules, record and padding rejection cases). One line is printed per
check, then `N passed, M failed`; the exit status is non-zero if anything
failed. Run from the repository root, without arguments.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VECTOR_DIR = Path("common/tests/vectors")


# ---------------------------------------------------------------------------
# Errors (FORMAT.md section 13)
# ---------------------------------------------------------------------------

ERROR_KINDS = {
    "authentication",
    "digest",
    "seed",
    "length",
    "version",
    "name_tag",
    "kdf_params",
    "recovery_key",
    "malformed",
    "invalid_name",
    "other",
}


class FormatError(Exception):
    """A failure of a format operation, with its kind (FORMAT.md 13)."""

    def __init__(self, kind: str, detail: str = "") -> None:
        assert kind in ERROR_KINDS, kind
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail


# ---------------------------------------------------------------------------
# Conventions and primitives (FORMAT.md 1)
# ---------------------------------------------------------------------------

U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1


def u16be(v: int) -> bytes:
    return v.to_bytes(2, "big")


def u32be(v: int) -> bytes:
    return v.to_bytes(4, "big")


def u64be(v: int) -> bytes:
    return v.to_bytes(8, "big")


def i64be(v: int) -> bytes:
    return v.to_bytes(8, "big", signed=True)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def hmac_sha256(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def hkdf(ikm: bytes, salt: bytes | None, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 (RFC 5869). salt=None means "absent": 32 zero bytes."""
    return HKDF(
        algorithm=hashes.SHA256(), length=length, salt=salt, info=info
    ).derive(ikm)


def ct_equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def frame(label: str, fields: list[bytes]) -> bytes:
    """The AAD framing: label || 0x00 || (u32be(len) || field)*."""
    raw = label.encode("ascii")
    assert b"\x00" not in raw
    out = bytearray(raw)
    out.append(0)
    for f in fields:
        out += u32be(len(f))
        out += f
    return bytes(out)


# Labels (FORMAT.md 1.3)
INFO_AUTH_KEY = b"securevault/v1/auth-key"
INFO_KEK = b"securevault/v1/key-encryption-key"
INFO_SUBKEY_NAME_ENC = b"securevault/v1/subkey/name-encryption"
INFO_SUBKEY_NAME_TAG = b"securevault/v1/subkey/name-tag"
INFO_SUBKEY_ATTRS = b"securevault/v1/subkey/attributes"
INFO_SUBKEY_CONTENT = b"securevault/v1/subkey/content"
INFO_RECOVERY_WRAP = b"securevault/v1/recovery-wrap-key"
INFO_MESSAGE_KEY = b"securevault/v1/message-key"
INFO_OBJECT_KEY = b"securevault/v1/object-key"
RECOVERY_CHECKSUM_PREFIX = b"securevault/v1/recovery-checksum"
AAD_KEY_WRAP = "securevault/v1/key-wrap"
AAD_NAME = "securevault/v1/name"
AAD_ATTRIBUTES = "securevault/v1/attributes"
AAD_CONTENT = "securevault/v1/content"


# ---------------------------------------------------------------------------
# Identifiers (FORMAT.md 2)
# ---------------------------------------------------------------------------

ID_LEN = 16
ROOT_ID = bytes(ID_LEN)


def parse_id(text: str) -> bytes:
    raw = bytes.fromhex(text)
    if len(raw) != ID_LEN or len(text) != 2 * ID_LEN:
        raise ValueError(f"not a 16-byte id: {text!r}")
    return raw


# ---------------------------------------------------------------------------
# Account keys (FORMAT.md 3)
# ---------------------------------------------------------------------------

KDF_MIN_MEMORY = 19 * 1024
KDF_MAX_MEMORY = 2 * 1024 * 1024
KDF_MIN_ITER = 2
KDF_MAX_ITER = 32
KDF_MAX_LANES = 16


@dataclass
class KdfParams:
    memory_kib: int
    iterations: int
    parallelism: int
    salt: bytes

    @classmethod
    def from_json(cls, obj: dict) -> "KdfParams":
        return cls(
            memory_kib=int(obj["memory_kib"]),
            iterations=int(obj["iterations"]),
            parallelism=int(obj["parallelism"]),
            salt=bytes.fromhex(obj["salt"]),
        )

    def check_bounds(self) -> None:
        if self.memory_kib < KDF_MIN_MEMORY:
            raise FormatError("kdf_params", "memory cost below the minimum")
        if self.memory_kib > KDF_MAX_MEMORY:
            raise FormatError("kdf_params", "memory cost above the maximum")
        if self.iterations < KDF_MIN_ITER:
            raise FormatError("kdf_params", "too few iterations")
        if self.iterations > KDF_MAX_ITER:
            raise FormatError("kdf_params", "too many iterations")
        if not 1 <= self.parallelism <= KDF_MAX_LANES:
            raise FormatError("kdf_params", "parallelism out of range")
        if self.memory_kib < 8 * self.parallelism:
            raise FormatError("kdf_params", "memory below 8 KiB per lane")
        if len(self.salt) != 16:
            raise FormatError("kdf_params", "salt is not 16 bytes")


def account_keys(password: bytes, params: KdfParams) -> tuple[bytes, bytes]:
    """(auth key, key-encryption key) for a password."""
    params.check_bounds()
    master = hash_secret_raw(
        secret=password,
        salt=params.salt,
        time_cost=params.iterations,
        memory_cost=params.memory_kib,
        parallelism=params.parallelism,
        hash_len=32,
        type=Type.ID,
        version=19,
    )
    return hkdf(master, None, INFO_AUTH_KEY, 32), hkdf(master, None, INFO_KEK, 32)


@dataclass
class Subkeys:
    name_encryption: bytes
    name_tag: bytes
    attributes: bytes
    content: bytes


def subkeys(vault_key: bytes) -> Subkeys:
    return Subkeys(
        name_encryption=hkdf(vault_key, None, INFO_SUBKEY_NAME_ENC, 32),
        name_tag=hkdf(vault_key, None, INFO_SUBKEY_NAME_TAG, 32),
        attributes=hkdf(vault_key, None, INFO_SUBKEY_ATTRS, 32),
        content=hkdf(vault_key, None, INFO_SUBKEY_CONTENT, 32),
    )


# ---------------------------------------------------------------------------
# The sealed box (FORMAT.md 4)
# ---------------------------------------------------------------------------

BOX_VERSION = 0x01
BOX_SALT_LEN = 24
GCM_TAG_LEN = 16
BOX_OVERHEAD = 1 + BOX_SALT_LEN + GCM_TAG_LEN  # 41


def _message_key(key: bytes, salt: bytes) -> tuple[AESGCM, bytes]:
    okm = hkdf(key, salt, INFO_MESSAGE_KEY, 44)
    return AESGCM(okm[:32]), okm[32:]


def box_seal(key: bytes, aad: bytes, plaintext: bytes, salt: bytes) -> bytes:
    if len(salt) != BOX_SALT_LEN:
        raise FormatError("other", "sealed-box salt must be 24 bytes")
    cipher, nonce = _message_key(key, salt)
    return bytes([BOX_VERSION]) + salt + cipher.encrypt(nonce, plaintext, aad)


def box_open(key: bytes, aad: bytes, box: bytes) -> bytes:
    if len(box) == 0:
        raise FormatError("malformed", "sealed box is empty")
    if box[0] != BOX_VERSION:
        raise FormatError("version", f"sealed-box version {box[0]}")
    if len(box) < BOX_OVERHEAD:
        raise FormatError("malformed", "sealed box shorter than its overhead")
    cipher, nonce = _message_key(key, box[1 : 1 + BOX_SALT_LEN])
    try:
        return cipher.decrypt(nonce, box[1 + BOX_SALT_LEN :], aad)
    except InvalidTag:
        raise FormatError("authentication", "sealed box") from None


# ---------------------------------------------------------------------------
# Wrapped vault keys (FORMAT.md 5)
# ---------------------------------------------------------------------------

WRAPPED_LEN = 32 + BOX_OVERHEAD  # 73
PURPOSES = {"password": b"password", "recovery": b"recovery"}

# Characters with the Unicode White_Space property (what Rust's str::trim removes).
UNICODE_WHITE_SPACE = (
    "\u0009\u000a\u000b\u000c\u000d\u0020\u0085\u00a0\u1680"
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)


ASCII_WHITE_SPACE = " \t\n\x0c\r"  # Rust's char::is_ascii_whitespace (no U+000B)


def canonical_account(email: str) -> bytes:
    # ASCII white space trimmed at both ends, ASCII letters lower-cased, every
    # other character kept as it is.
    trimmed = email.strip(ASCII_WHITE_SPACE)
    lowered = "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in trimmed)
    return lowered.encode("utf-8")


def wrap_aad(purpose: str, account: str) -> bytes:
    return frame(AAD_KEY_WRAP, [PURPOSES[purpose], canonical_account(account)])


def wrap_vault_key(key: bytes, purpose: str, account: str, vault_key: bytes, salt: bytes) -> bytes:
    assert len(vault_key) == 32
    return box_seal(key, wrap_aad(purpose, account), vault_key, salt)


def unwrap_vault_key(key: bytes, purpose: str, account: str, wrapped: bytes) -> bytes:
    if len(wrapped) != WRAPPED_LEN:
        raise FormatError("malformed", "wrapped key has the wrong length")
    plain = box_open(key, wrap_aad(purpose, account), wrapped)
    if len(plain) != 32:
        raise FormatError("malformed", "wrapped key has the wrong length")
    return plain


# ---------------------------------------------------------------------------
# The recovery key (FORMAT.md 6)
# ---------------------------------------------------------------------------

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CROCKFORD_VALUE = {}
for _v, _c in enumerate(CROCKFORD):
    CROCKFORD_VALUE[_c] = _v
    CROCKFORD_VALUE[_c.lower()] = _v
for _c in "Oo":
    CROCKFORD_VALUE[_c] = 0
for _c in "IiLl":
    CROCKFORD_VALUE[_c] = 1
RECOVERY_SYMBOLS = 56


def base32_encode(data: bytes) -> str:
    bits = int.from_bytes(data, "big")
    nbits = 8 * len(data)
    assert nbits % 5 == 0, "only whole symbols are used in this format"
    return "".join(
        CROCKFORD[(bits >> (nbits - 5 * (i + 1))) & 31] for i in range(nbits // 5)
    )


def base32_decode(symbols: str) -> bytes:
    value = 0
    for ch in symbols:
        v = CROCKFORD_VALUE.get(ch)
        if v is None:
            raise FormatError("recovery_key", f"invalid symbol {ch!r}")
        value = (value << 5) | v
    nbits = 5 * len(symbols)
    assert nbits % 8 == 0
    return value.to_bytes(nbits // 8, "big")


def recovery_checksum(key: bytes) -> bytes:
    return sha256(RECOVERY_CHECKSUM_PREFIX + key)[:3]


def recovery_display(key: bytes) -> str:
    symbols = base32_encode(key + recovery_checksum(key))
    return "-".join(symbols[i : i + 4] for i in range(0, len(symbols), 4))


def recovery_parse(text: str) -> bytes:
    compact = "".join(c for c in text if c != "-" and c not in UNICODE_WHITE_SPACE)
    if len(compact.encode("utf-8")) != RECOVERY_SYMBOLS:
        raise FormatError("recovery_key", "expected 56 symbols")
    raw = base32_decode(compact)
    key, checksum = raw[:32], raw[32:]
    if not ct_equal(recovery_checksum(key), checksum):
        raise FormatError("recovery_key", "checksum mismatch (a typo?)")
    return key


def recovery_wrapping_key(recovery_key: bytes) -> bytes:
    return hkdf(recovery_key, None, INFO_RECOVERY_WRAP, 32)


# ---------------------------------------------------------------------------
# Names (FORMAT.md 7)
# ---------------------------------------------------------------------------

NAME_MAX = 255
NAME_BLOCK = 32


def check_name(name: bytes) -> None:
    if len(name) == 0:
        raise FormatError("invalid_name", "empty")
    if len(name) > NAME_MAX:
        raise FormatError("invalid_name", "longer than 255 bytes")
    if name in (b".", b".."):
        raise FormatError("invalid_name", ". and .. are reserved")
    if b"/" in name or b"\x00" in name:
        raise FormatError("invalid_name", "contains / or NUL")


def name_tag(tag_key: bytes, parent: bytes, name: bytes) -> bytes:
    check_name(name)
    return hmac_sha256(tag_key, parent + name)


def pad_name(name: bytes) -> bytes:
    total = NAME_BLOCK * (len(name) // NAME_BLOCK + 1)
    return name + b"\x80" + bytes(total - len(name) - 1)


def unpad_name(padded: bytes) -> bytes:
    if len(padded) == 0 or len(padded) % NAME_BLOCK:
        raise FormatError("malformed", "padded name length")
    end = len(padded.rstrip(b"\x00")) - 1
    if end < 0 or padded[end] != 0x80:
        raise FormatError("malformed", "no 0x80 padding marker")
    if len(padded) - end > NAME_BLOCK:
        raise FormatError("malformed", "more than one block of padding")
    return padded[:end]


def name_aad(parent: bytes, child: bytes) -> bytes:
    return frame(AAD_NAME, [parent, child])


def encrypt_name(enc_key: bytes, parent: bytes, child: bytes, name: bytes, salt: bytes) -> bytes:
    check_name(name)
    return box_seal(enc_key, name_aad(parent, child), pad_name(name), salt)


def decrypt_name(enc_key: bytes, tag_key: bytes, parent: bytes, child: bytes,
                 encrypted: bytes, tag: bytes) -> bytes:
    padded = box_open(enc_key, name_aad(parent, child), encrypted)
    name = unpad_name(padded)
    check_name(name)
    if not ct_equal(name_tag(tag_key, parent, name), tag):
        raise FormatError("name_tag", "name does not match its tag")
    return name


# ---------------------------------------------------------------------------
# Attribute records (FORMAT.md 8)
# ---------------------------------------------------------------------------

RECORD_VERSION_DIGESTS = 1  # every object entry commits to a SHA-256 digest
RECORD_VERSION = 2  # tagged entries: a digest or a seed (FORMAT.md 8.1)
CHECK_DIGEST, CHECK_SEED = 1, 2
KIND_FILE, KIND_DIR, KIND_SYMLINK, KIND_FIFO, KIND_SOCKET = 1, 2, 3, 4, 5
KINDS = {KIND_FILE, KIND_DIR, KIND_SYMLINK, KIND_FIFO, KIND_SOCKET}
MAX_TARGET = 4095
MAX_XATTR_NAME = 255
MAX_XATTR_VALUE = 65536
MAX_XATTR_TOTAL = 256 * 1024
MAX_OBJECTS = 1 << 22
OBJECT_ENTRY_LEN = 64
MIN_TAGGED_ENTRY_LEN = 16 + 8 + 8 + 1 + 24


@dataclass
class ObjectEntry:
    """Exactly one of `digest` (32 bytes) and `seed` (24 bytes) is set."""

    id: bytes
    offset: int
    len: int
    digest: bytes | None
    seed: bytes | None = None

    def encode_tagged(self) -> bytes:
        head = self.id + u64be(self.offset) + u64be(self.len)
        if self.seed is not None:
            return head + bytes([CHECK_SEED]) + self.seed
        assert self.digest is not None
        return head + bytes([CHECK_DIGEST]) + self.digest


@dataclass
class Record:
    kind: int
    mode: int
    uid: int
    gid: int
    size: int
    atime: tuple[int, int]
    mtime: tuple[int, int]
    ctime: tuple[int, int]
    btime: tuple[int, int]
    symlink_target: bytes = b""
    xattrs: list[tuple[bytes, bytes]] = field(default_factory=list)  # ascending
    objects: list[ObjectEntry] = field(default_factory=list)

    @classmethod
    def from_json(cls, obj: dict) -> "Record":
        t = lambda k: (int(obj[k][0]), int(obj[k][1]))  # noqa: E731
        return cls(
            kind=int(obj["kind"]),
            mode=int(obj["mode"]),
            uid=int(obj["uid"]),
            gid=int(obj["gid"]),
            size=int(obj["size"]),
            atime=t("atime"),
            mtime=t("mtime"),
            ctime=t("ctime"),
            btime=t("btime"),
            symlink_target=bytes.fromhex(obj["symlink_target"]),
            xattrs=[(bytes.fromhex(n), bytes.fromhex(v)) for n, v in obj["xattrs"]],
            objects=[
                ObjectEntry(parse_id(o["id"]), int(o["offset"]), int(o["len"]),
                            bytes.fromhex(o["digest"]) if "digest" in o else None,
                            bytes.fromhex(o["seed"]) if "seed" in o else None)
                for o in obj["objects"]
            ],
        )


def _bad(reason: str) -> FormatError:
    return FormatError("malformed", f"attribute record: {reason}")


def validate_record(r: Record) -> None:
    """The rules of FORMAT.md 8.5, in order."""
    if r.mode & ~0o7777:
        raise _bad("mode has bits outside 0o7777")
    for _, nanos in (r.atime, r.mtime, r.ctime, r.btime):
        if not 0 <= nanos < 1_000_000_000:
            raise _bad("nanoseconds out of range")
    if r.kind == KIND_SYMLINK:
        if not 1 <= len(r.symlink_target) <= MAX_TARGET:
            raise _bad("symlink target length")
        if b"\x00" in r.symlink_target:
            raise _bad("symlink target contains NUL")
        if r.size != len(r.symlink_target):
            raise _bad("symlink size differs from its target length")
    elif r.symlink_target:
        raise _bad("symlink target on a node that is not a symlink")
    if r.kind not in (KIND_FILE, KIND_SYMLINK) and r.size != 0:
        raise _bad("size on a node without contents")
    if r.kind != KIND_FILE and r.objects:
        raise _bad("objects on a node that is not a file")
    total = 0
    for name, value in r.xattrs:
        if not 1 <= len(name) <= MAX_XATTR_NAME or b"\x00" in name:
            raise _bad("xattr name length")
        if len(value) > MAX_XATTR_VALUE:
            raise _bad("xattr value too large")
        total += len(name) + len(value)
    if total > MAX_XATTR_TOTAL:
        raise _bad("xattrs too large in total")
    if len(r.objects) > MAX_OBJECTS:
        raise _bad("too many objects")
    next_free = 0
    for o in r.objects:
        if o.len < 1:
            raise _bad("empty object")
        if o.offset < next_free:
            raise _bad("objects overlap or are out of order")
        next_free = o.offset + o.len
        if next_free > U64_MAX:
            raise _bad("object end overflows")
        if next_free > r.size:
            raise _bad("object extends past the file size")


def encode_record(r: Record) -> bytes:
    if r.kind not in KINDS:
        raise _bad("unknown node kind")
    names = [n for n, _ in r.xattrs]
    if any(a >= b for a, b in zip(names, names[1:])):
        raise _bad("xattr names not strictly ascending")
    validate_record(r)
    # Canonical: version 1 exactly when no entry commits to a seed.
    tagged = any(o.seed is not None for o in r.objects)
    out = bytearray()
    out.append(RECORD_VERSION if tagged else RECORD_VERSION_DIGESTS)
    out.append(r.kind)
    out += u32be(r.mode) + u32be(r.uid) + u32be(r.gid) + u64be(r.size)
    for secs, nanos in (r.atime, r.mtime, r.ctime, r.btime):
        out += i64be(secs) + u32be(nanos)
    out += u16be(len(r.symlink_target)) + r.symlink_target
    out += u32be(len(r.xattrs))
    for name, value in r.xattrs:
        out.append(len(name))
        out += name + u32be(len(value)) + value
    out += u32be(len(r.objects))
    for o in r.objects:
        if tagged:
            out += o.encode_tagged()
        else:
            assert o.digest is not None
            out += o.id + u64be(o.offset) + u64be(o.len) + o.digest
    return bytes(out)


class _Cursor:
    """Reads big-endian fields; reading past the end is `malformed`."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        if n > self.remaining():
            raise _bad("input ends early")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def int64(self) -> int:
        return int.from_bytes(self.take(8), "big", signed=True)


def decode_record(data: bytes) -> Record:
    """FORMAT.md 8.4, in order."""
    c = _Cursor(data)
    version = c.uint(1)
    if version not in (RECORD_VERSION_DIGESTS, RECORD_VERSION):
        raise FormatError("version", f"record version {version}")
    tagged = version == RECORD_VERSION
    kind = c.uint(1)
    if kind not in KINDS:
        raise _bad("unknown node kind")
    mode, uid, gid = c.uint(4), c.uint(4), c.uint(4)
    size = c.uint(8)
    times = []
    for _ in range(4):
        secs = c.int64()
        times.append((secs, c.uint(4)))
    target = c.take(c.uint(2))
    xattrs: list[tuple[bytes, bytes]] = []
    for _ in range(c.uint(4)):
        name = c.take(c.uint(1))
        if xattrs and xattrs[-1][0] >= name:
            raise _bad("xattr names not strictly ascending")
        value = c.take(c.uint(4))
        xattrs.append((name, value))
    count = c.uint(4)
    if count > c.remaining() // (MIN_TAGGED_ENTRY_LEN if tagged else OBJECT_ENTRY_LEN):
        raise _bad("object count exceeds the record")
    objects = []
    for _ in range(count):
        oid = c.take(16)
        offset, length = c.uint(8), c.uint(8)
        if not tagged:
            objects.append(ObjectEntry(oid, offset, length, c.take(32)))
            continue
        check = c.uint(1)
        if check == CHECK_DIGEST:
            objects.append(ObjectEntry(oid, offset, length, c.take(32)))
        elif check == CHECK_SEED:
            objects.append(ObjectEntry(oid, offset, length, None, c.take(24)))
        else:
            raise _bad("unknown object commitment")
    if c.remaining():
        raise _bad("trailing data")
    if tagged and not any(o.seed is not None for o in objects):
        raise _bad("a version 2 record without a seed commitment")
    r = Record(kind, mode, uid, gid, size, times[0], times[1], times[2], times[3],
               target, xattrs, objects)
    validate_record(r)
    return r


def record_aad(node: bytes, version: int) -> bytes:
    return frame(AAD_ATTRIBUTES, [node, u64be(version)])


def seal_record(key: bytes, node: bytes, version: int, r: Record, salt: bytes) -> bytes:
    return box_seal(key, record_aad(node, version), encode_record(r), salt)


def open_record(key: bytes, node: bytes, version: int, sealed: bytes) -> Record:
    return decode_record(box_open(key, record_aad(node, version), sealed))


# ---------------------------------------------------------------------------
# Content objects (FORMAT.md 9)
# ---------------------------------------------------------------------------

MAGIC = b"SVC"
CONTENT_VERSION = 0x01
SEED_LEN = 24
HEADER_LEN = len(MAGIC) + 1 + SEED_LEN  # 28
SEG = 65536
SEG_CT = SEG + GCM_TAG_LEN  # 65552
MAX_SEGMENTS = 1 << 32


def segment_count(plain_len: int) -> int:
    return max(1, -(-plain_len // SEG))


def ciphertext_len(plain_len: int) -> int:
    n = segment_count(plain_len)
    if n > MAX_SEGMENTS:
        raise FormatError("other", "object too large")
    return HEADER_LEN + plain_len + GCM_TAG_LEN * n


def plaintext_len(ct_len: int) -> int:
    body = ct_len - HEADER_LEN
    if body < GCM_TAG_LEN:
        raise FormatError("malformed", "impossible ciphertext length")
    n = -(-body // SEG_CT)
    plain = body - GCM_TAG_LEN * n
    if segment_count(plain) != n or n > MAX_SEGMENTS:
        raise FormatError("malformed", "impossible ciphertext length")
    return plain


@dataclass(frozen=True)
class Binding:
    file: bytes
    object: bytes
    offset: int

    def aad(self) -> bytes:
        return frame(AAD_CONTENT, [self.file, self.object, u64be(self.offset)])


class ObjectKeys:
    """Object key, nonce prefix and AAD of one object."""

    def __init__(self, content_key: bytes, seed: bytes, binding: Binding) -> None:
        okm = hkdf(content_key, seed, INFO_OBJECT_KEY, 39)
        self.cipher = AESGCM(okm[:32])
        self.prefix = okm[32:]
        self.aad = binding.aad()

    def nonce(self, index: int, last: bool) -> bytes:
        if not 0 <= index < MAX_SEGMENTS:
            raise FormatError("other", "segment index out of range")
        return self.prefix + u32be(index) + (b"\x01" if last else b"\x00")


def encrypt_object(content_key: bytes, binding: Binding, plaintext: bytes, seed: bytes) -> bytes:
    if len(seed) != SEED_LEN:
        raise FormatError("other", "seed must be 24 bytes")
    keys = ObjectKeys(content_key, seed, binding)
    chunks = [plaintext[i : i + SEG] for i in range(0, len(plaintext), SEG)] or [b""]
    out = bytearray(MAGIC + bytes([CONTENT_VERSION]) + seed)
    for i, chunk in enumerate(chunks):
        out += keys.cipher.encrypt(keys.nonce(i, i == len(chunks) - 1), chunk, keys.aad)
    return bytes(out)


def _parse_header(header: bytes) -> bytes:
    if len(header) != HEADER_LEN:
        raise FormatError("malformed", "header length")
    if header[:3] != MAGIC:
        raise FormatError("malformed", "bad magic")
    if header[3] != CONTENT_VERSION:
        raise FormatError("version", f"content version {header[3]}")
    return header[4:]


def _segment_plain_len(plain_len: int, index: int) -> int:
    n = segment_count(plain_len)
    return plain_len - SEG * (n - 1) if index == n - 1 else SEG


def _open_segment(keys: ObjectKeys, plain_len: int, index: int, ct: bytes) -> bytes:
    n = segment_count(plain_len)
    expected = _segment_plain_len(plain_len, index) + GCM_TAG_LEN
    if len(ct) != expected:
        raise FormatError("length", f"segment {index} is {len(ct)} bytes, not {expected}")
    try:
        return keys.cipher.decrypt(keys.nonce(index, index == n - 1), ct, keys.aad)
    except InvalidTag:
        raise FormatError("authentication", f"segment {index}") from None


def decrypt_object(content_key: bytes, binding: Binding, ct: bytes, plain_len: int) -> bytes:
    """FORMAT.md 9.8 from step 2: the length L is the authenticated one."""
    expected = ciphertext_len(plain_len)
    if len(ct) != expected:
        raise FormatError("length", f"ciphertext is {len(ct)} bytes, not {expected}")
    seed = _parse_header(ct[:HEADER_LEN])
    keys = ObjectKeys(content_key, seed, binding)
    parts = []
    for i in range(segment_count(plain_len)):
        start = HEADER_LEN + i * SEG_CT
        seg_len = _segment_plain_len(plain_len, i) + GCM_TAG_LEN
        parts.append(_open_segment(keys, plain_len, i, ct[start : start + seg_len]))
    return b"".join(parts)


def open_object(content_key: bytes, file_id: bytes, entry: ObjectEntry, ct: bytes) -> bytes:
    """FORMAT.md 9.8: the commitment (seed or digest) first, then the object."""
    if entry.seed is not None:
        if len(ct) < HEADER_LEN:
            raise FormatError("malformed", "object header too short")
        if ct[:3] != b"SVC":
            raise FormatError("malformed", "bad magic")
        if ct[3] != 1:
            raise FormatError("version", f"content format version {ct[3]}")
        if not ct_equal(ct[4:HEADER_LEN], entry.seed):
            raise FormatError("seed", "object seed does not match the object list")
    elif not ct_equal(sha256(ct), entry.digest or b""):
        raise FormatError("digest", "object digest does not match the object list")
    return decrypt_object(content_key, Binding(file_id, entry.id, entry.offset), ct, entry.len)


def range_plan(plain_len: int, offset: int, want: int) -> tuple[int, int, int, int]:
    """(first segment, past-last segment, ciphertext start, ciphertext stop): FORMAT.md 9.9."""
    end = min(offset + want, plain_len)
    if offset >= end:
        return 0, 0, HEADER_LEN, HEADER_LEN
    first, past = offset // SEG, -(-end // SEG)
    start = HEADER_LEN + SEG_CT * first
    stop = min(HEADER_LEN + SEG_CT * past, ciphertext_len(plain_len))
    return first, past, start, stop


def decrypt_range(content_key: bytes, binding: Binding, header: bytes, plain_len: int,
                  offset: int, want: int, ct_range: bytes) -> bytes:
    seed = _parse_header(header)
    first, past, start, stop = range_plan(plain_len, offset, want)
    if len(ct_range) != stop - start:
        raise FormatError("length", "range ciphertext length")
    if first == past:
        return b""
    keys = ObjectKeys(content_key, seed, binding)
    parts, pos = [], 0
    for i in range(first, past):
        seg_len = _segment_plain_len(plain_len, i) + GCM_TAG_LEN
        parts.append(_open_segment(keys, plain_len, i, ct_range[pos : pos + seg_len]))
        pos += seg_len
    plain = b"".join(parts)
    end = min(offset + want, plain_len)
    skip = offset - SEG * first
    return plain[skip : skip + (end - offset)]


def pattern(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


# ---------------------------------------------------------------------------
# Running the vectors (FORMAT.md 14.3)
# ---------------------------------------------------------------------------


class Mismatch(Exception):
    """A computed value differs from the vector (not a format error)."""


def expect_equal(what: str, got, want) -> None:
    if got != want:
        g = got.hex() if isinstance(got, bytes) else repr(got)
        w = want.hex() if isinstance(want, bytes) else repr(want)
        if len(g) > 200:
            g, w = g[:200] + "...", w[:200] + "..."
        raise Mismatch(f"{what}: got {g}, expected {w}")


def h(v: dict, name: str) -> bytes:
    return bytes.fromhex(v[name])


def run_kdf(v: dict) -> None:
    params = KdfParams.from_json(v["params"])
    auth, kek = account_keys(v["password"].encode("utf-8"), params)
    expect_equal("auth_key", auth, h(v, "auth_key"))
    expect_equal("kek", kek, h(v, "kek"))


def run_subkeys(v: dict) -> None:
    s = subkeys(h(v, "vault_key"))
    for name in ("name_encryption", "name_tag", "attributes", "content"):
        expect_equal(name, getattr(s, name), h(v, name))


def run_wrap(v: dict, valid: bool) -> None:
    purpose, account, wrapped = v["purpose"], v["account"], h(v, "wrapped")
    if purpose == "password":
        key = h(v, "kek")
    elif purpose == "recovery":
        raw = h(v, "recovery_key")
        if "recovery_key_text" in v:
            expect_equal("parsed recovery key", recovery_parse(v["recovery_key_text"]), raw)
            if valid:
                expect_equal("written form", recovery_display(raw), v["recovery_key_text"])
        key = recovery_wrapping_key(raw)
    else:
        raise Mismatch(f"unknown purpose {purpose!r}")
    vault_key = unwrap_vault_key(key, purpose, account, wrapped)
    expect_equal("vault key", vault_key, h(v, "vault_key"))
    expect_equal("re-wrapped", wrap_vault_key(key, purpose, account, vault_key, h(v, "salt")), wrapped)


def run_name(v: dict) -> None:
    ek, tk = h(v, "name_encryption_key"), h(v, "name_tag_key")
    parent, child = parse_id(v["parent"]), parse_id(v["child"])
    name = decrypt_name(ek, tk, parent, child, h(v, "encrypted"), h(v, "tag"))
    expect_equal("name", name, h(v, "name"))
    expect_equal("tag", name_tag(tk, parent, name), h(v, "tag"))
    expect_equal("re-encrypted", encrypt_name(ek, parent, child, name, h(v, "salt")), h(v, "encrypted"))
    expect_equal("encrypted length", len(h(v, "encrypted")), len(pad_name(name)) + BOX_OVERHEAD)


def run_attributes(v: dict) -> None:
    key, node, version = h(v, "attributes_key"), parse_id(v["node"]), int(v["version"])
    record = open_record(key, node, version, h(v, "sealed"))
    expected = Record.from_json(v["record"])
    expect_equal("record", record, expected)
    # Encode both the decoded record and the JSON one: both must give the plaintext.
    expect_equal("encoded record", encode_record(record), h(v, "plaintext"))
    expect_equal("encoded JSON record", encode_record(expected), h(v, "plaintext"))
    expect_equal("re-sealed", seal_record(key, node, version, record, h(v, "salt")), h(v, "sealed"))


def run_content(v: dict, valid: bool) -> None:
    key = h(v, "content_key")
    binding = Binding(parse_id(v["file"]), parse_id(v["object"]), int(v["offset"]))
    plain_len = int(v["plaintext_len"])
    ct = (VECTOR_DIR / v["ciphertext_file"]).read_bytes()
    expect_equal("ciphertext_sha256 (the vector file itself)", sha256(ct), h(v, "ciphertext_sha256"))
    if "object_digest" in v:
        entry = ObjectEntry(binding.object, binding.offset, plain_len, h(v, "object_digest"))
        plain = open_object(key, binding.file, entry, ct)
    elif "object_seed" in v:
        entry = ObjectEntry(binding.object, binding.offset, plain_len, None, h(v, "object_seed"))
        plain = open_object(key, binding.file, entry, ct)
    else:
        plain = decrypt_object(key, binding, ct, plain_len)
    expect_equal("plaintext", plain, pattern(plain_len))
    expect_equal("re-encrypted", encrypt_object(key, binding, plain, h(v, "seed")), ct)
    if valid:
        # The lengths of 9.6 and range reads (9.9) over this object.
        expect_equal("ciphertext_len", ciphertext_len(plain_len), len(ct))
        expect_equal("plaintext_len", plaintext_len(len(ct)), plain_len)
        for off, want in [(0, 1), (0, plain_len), (SEG - 1, 2), (SEG, SEG), (max(plain_len - 1, 0), 5),
                          (plain_len, 3), (7, 0), (2 * SEG + 17, 1 << 40), (123, 70000)]:
            _, _, start, stop = range_plan(plain_len, off, want)
            got = decrypt_range(key, binding, ct[:HEADER_LEN], plain_len, off, want, ct[start:stop])
            expect_equal(f"range {off}+{want}", got, pattern(plain_len)[off : off + want])


def run_vector(v: dict, valid: bool) -> None:
    kind = v["kind"]
    if kind == "kdf":
        run_kdf(v)
    elif kind == "subkeys":
        run_subkeys(v)
    elif kind == "wrap":
        run_wrap(v, valid)
    elif kind == "name":
        run_name(v)
    elif kind == "attributes":
        run_attributes(v)
    elif kind == "content":
        run_content(v, valid)
    else:
        raise Mismatch(f"unknown vector kind {kind!r}")


def check_vector(path: Path) -> tuple[bool, str]:
    v = json.loads(path.read_text())
    expected_error = v.get("expect_error")
    stem = path.stem
    if expected_error is None:
        if stem.startswith("fail_"):
            return False, "named fail_* but has no expect_error"
        try:
            run_vector(v, valid=True)
        except (FormatError, Mismatch) as e:
            return False, f"valid vector failed: {e}"
        return True, f"{v['kind']}: ok"
    if not stem.startswith("fail_"):
        return False, "has expect_error but is not named fail_*"
    if expected_error not in ERROR_KINDS:
        return False, f"unknown expect_error {expected_error!r}"
    try:
        run_vector(v, valid=False)
    except FormatError as e:
        if e.kind == expected_error:
            return True, f"{v['kind']}: failed as expected ({e})"
        return False, f"failed with {e.kind} ({e}), expected {expected_error}"
    except Mismatch as e:
        return False, f"no {expected_error} error; a value differed instead: {e}"
    return False, f"succeeded (returned plaintext) but must fail with {expected_error}"


# ---------------------------------------------------------------------------
# Derived checks: rules of the document the vectors do not exercise directly
# ---------------------------------------------------------------------------


def expect_error(kind: str, fn, *args) -> None:
    try:
        result = fn(*args)
    except FormatError as e:
        if e.kind != kind:
            raise Mismatch(f"{fn.__name__}: got {e.kind} ({e}), expected {kind}") from None
        return
    raise Mismatch(f"{fn.__name__} returned {result!r:.60} instead of failing with {kind}")


def load(stem: str) -> dict:
    return json.loads((VECTOR_DIR / f"{stem}.json").read_text())


def derived_framing() -> None:
    expect_equal("frame", frame("x", [b"ab", b""]), bytes.fromhex("7800000000026162" "00000000"))
    if frame("x", [b"ab", b"c"]) == frame("x", [b"a", b"bc"]):
        raise Mismatch("framing is ambiguous")
    expect_equal("RFC 5869 A.1", hkdf(bytes([0x0B] * 22), bytes(range(13)), bytes(range(0xF0, 0xFA)), 42),
                 bytes.fromhex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                               "34007208d5b887185865"))
    # Absent salt == 32 zero bytes == empty salt.
    expect_equal("absent salt", hkdf(b"k", None, b"i", 32), hkdf(b"k", bytes(32), b"i", 32))
    expect_equal("empty salt", hkdf(b"k", b"", b"i", 32), hkdf(b"k", bytes(32), b"i", 32))


def derived_kdf_bounds() -> None:
    good = KdfParams(19456, 2, 1, bytes(16))
    good.check_bounds()
    for change in [dict(memory_kib=19455), dict(memory_kib=2097153), dict(iterations=1),
                   dict(iterations=33), dict(parallelism=0), dict(parallelism=17)]:
        p = KdfParams(**{**good.__dict__, **change})
        expect_error("kdf_params", p.check_bounds)
    KdfParams(2097152, 32, 16, bytes(16)).check_bounds()


def derived_sealed_box() -> None:
    v = load("wrap_password")
    box, key = h(v, "wrapped"), h(v, "kek")
    aad = wrap_aad("password", v["account"])
    expect_equal("open", box_open(key, aad, box), h(v, "vault_key"))
    expect_equal("overhead", len(box), 32 + 41)
    expect_error("malformed", box_open, key, aad, b"")
    expect_error("version", box_open, key, aad, b"\x02" + box[1:])
    for cut in range(1, 41):
        expect_error("malformed", box_open, key, aad, box[:cut])
    for i in range(1, len(box)):
        t = bytearray(box)
        t[i] ^= 1
        expect_error("authentication", box_open, key, aad, bytes(t))
    expect_error("malformed", unwrap_vault_key, key, "password", v["account"], box[:-1])
    expect_error("malformed", unwrap_vault_key, key, "password", v["account"], box + b"\x00")
    # The account is canonicalised on both sides.
    expect_equal("canonical account", unwrap_vault_key(key, "password", "  Alice@Example.ORG\n", box),
                 h(v, "vault_key"))
    # The purpose alone (same key) is bound.
    expect_error("authentication", unwrap_vault_key, key, "recovery", v["account"], box)


def derived_recovery() -> None:
    v = load("wrap_recovery")
    raw, text = h(v, "recovery_key"), v["recovery_key_text"]
    expect_equal("length", len(text), 69)
    expect_equal("groups", [len(g) for g in text.split("-")], [4] * 14)
    sloppy = text.lower().replace("-", " ").replace("0", "o").replace("1", "l")
    expect_equal("sloppy parse", recovery_parse(sloppy), raw)
    expect_equal("I for 1", recovery_parse(text.replace("1", "I")), raw)
    compact = text.replace("-", "")
    for i in range(RECOVERY_SYMBOLS):
        typo = compact[:i] + ("B" if compact[i] == "A" else "A") + compact[i + 1 :]
        expect_error("recovery_key", recovery_parse, typo)
    expect_error("recovery_key", recovery_parse, compact[:55])
    expect_error("recovery_key", recovery_parse, compact + "0")
    expect_error("recovery_key", recovery_parse, "U" + compact[1:])
    if recovery_parse(text + "\n\t") != recovery_parse(text):
        raise FormatError("other", "white space around a recovery key must be ignored")
    expect_equal("all-zero key", recovery_parse(recovery_display(bytes(32))), bytes(32))


def derived_names() -> None:
    v = load("name_ascii")
    ek, tk = h(v, "name_encryption_key"), h(v, "name_tag_key")
    p, c = parse_id(v["parent"]), parse_id(v["child"])
    for bad in [b"", b".", b"..", b"a/b", b"a\x00b", b"x" * 256]:
        expect_error("invalid_name", encrypt_name, ek, p, c, bad, bytes(24))
        expect_error("invalid_name", name_tag, tk, p, bad)
    for n in (1, 31, 32, 33, 63, 64, 224, 255):
        name = b"a" * n
        padded = pad_name(name)
        expect_equal(f"padded length {n}", len(padded), 32 * (n // 32 + 1))
        expect_equal(f"unpad {n}", unpad_name(padded), name)
    expect_equal("name ending in 0x80", unpad_name(pad_name(b"a\x80")), b"a\x80")
    for bad in [b"", bytes(32), b"a" * 31 + b"\x01", b"a\x80" + bytes(62), b"a" * 33 + b"\x80"]:
        expect_error("malformed", unpad_name, bad)
    # A sealed name whose padded plaintext is bad, or whose name is invalid.
    aad = name_aad(p, c)
    expect_error("malformed", decrypt_name, ek, tk, p, c, box_seal(ek, aad, bytes(32), bytes(24)),
                 h(v, "tag"))
    expect_error("invalid_name", decrypt_name, ek, tk, p, c, box_seal(ek, aad, pad_name(b".."), bytes(24)),
                 h(v, "tag"))
    # The tag is bound to the parent; the root id is all zeros.
    if name_tag(tk, ROOT_ID, b"a") == name_tag(tk, p, b"a"):
        raise Mismatch("tag not bound to the parent")


def derived_records() -> None:
    v = load("attributes_file")
    plain = h(v, "plaintext")
    good = decode_record(plain)
    for cut in range(len(plain)):
        expect_error("malformed", decode_record, plain[:cut])
    expect_error("malformed", decode_record, plain + b"\x00")
    expect_error("version", decode_record, b"\x03" + plain[1:])
    expect_error("malformed", decode_record, b"\x02" + plain[1:])
    expect_error("malformed", decode_record, plain[:1] + b"\x06" + plain[2:])
    # Record version 2 (tagged entries): strict, and canonical.
    plain2 = h(load("attributes_file_v2"), "plaintext")
    v2 = decode_record(plain2)
    expect_equal("version 2 byte", plain2[0], RECORD_VERSION)
    for cut in range(len(plain2)):
        expect_error("malformed", decode_record, plain2[:cut])
    tag_at = len(plain2) - 25
    expect_equal("seed tag", plain2[tag_at], CHECK_SEED)
    expect_error("malformed", decode_record, plain2[:tag_at] + b"\x03" + plain2[tag_at + 1 :])
    digests_only = decode_record(plain2)
    digests_only.objects = [ObjectEntry(o.id, o.offset, o.len, o.digest or bytes(32)) for o in v2.objects]
    expect_equal("digest-only records are version 1", encode_record(digests_only)[0], RECORD_VERSION_DIGESTS)
    head = plain2[: len(plain2) - sum(len(o.encode_tagged()) for o in v2.objects)]
    expect_error("malformed", decode_record,
                 head + b"".join(o.encode_tagged() for o in digests_only.objects))
    a, b = plain.index(b"user.colour"), plain.index(b"user.empty")
    swapped = bytearray(plain)
    swapped[a : a + 5] = b"user."  # keep prefix; make the names descending:
    swapped[a + 5] = ord("z")
    expect_error("malformed", decode_record, bytes(swapped))
    # A huge object count must be refused before reading.
    empty = Record(KIND_FILE, 0, 0, 0, 0, (0, 0), (0, 0), (0, 0), (0, 0))
    enc = encode_record(empty)
    expect_equal("minimal record", len(enc), 80)
    expect_error("malformed", decode_record, enc[:-4] + u32be(U32_MAX))

    def variant(**changes) -> Record:
        r = decode_record(plain)
        for k, val in changes.items():
            setattr(r, k, val)
        return r

    bad_records = [
        variant(mode=0o100644),
        variant(mtime=(0, 1_000_000_000)),
        variant(kind=KIND_DIR),
        variant(kind=KIND_DIR, objects=[], size=1),
        variant(symlink_target=b"x"),
        variant(kind=KIND_SYMLINK, objects=[], symlink_target=b"", size=0),
        variant(kind=KIND_SYMLINK, objects=[], symlink_target=b"a\x00b", size=3),
        variant(kind=KIND_SYMLINK, objects=[], symlink_target=b"abc", size=4),
        variant(kind=KIND_SYMLINK, objects=[], symlink_target=b"x" * 4096, size=4096),
        variant(size=190_000),
        variant(objects=[ObjectEntry(bytes(16), 0, 0, bytes(32))]),
        variant(objects=[ObjectEntry(bytes(16), 10, 5, bytes(32)), ObjectEntry(bytes(16), 12, 5, bytes(32))]),
        variant(xattrs=[(b"", b"v")]),
        variant(xattrs=[(b"a\x00", b"v")]),
        variant(xattrs=[(b"a", bytes(65537))]),
        variant(xattrs=[(bytes([65 + i]), bytes(65536)) for i in range(4)]),
    ]
    for r in bad_records:
        expect_error("malformed", encode_record, r)
    # The same rules on decoding: splice a bad mode into a valid encoding.
    expect_error("malformed", decode_record, plain[:2] + u32be(0o100644) + plain[6:])
    # Allowed edge cases.
    encode_record(variant(xattrs=[(b"a", bytes(65536)), (b"b", b"")]))
    encode_record(variant(objects=[ObjectEntry(bytes(16), 0, 5, bytes(32)),
                                   ObjectEntry(bytes(16), 5, 5, bytes(32))]))
    link = variant(kind=KIND_SYMLINK, objects=[], symlink_target=b"x" * 4095, size=4095)
    expect_equal("round trip", decode_record(encode_record(link)), link)
    expect_equal("round trip", decode_record(encode_record(good)), good)


def derived_content() -> None:
    for plain_len, ct_len in [(0, 44), (1, 45), (65535, 65579), (65536, 65580), (65537, 65597),
                              (132072, 132148), (3 * SEG, 28 + 3 * SEG_CT)]:
        expect_equal(f"ciphertext_len({plain_len})", ciphertext_len(plain_len), ct_len)
        expect_equal(f"plaintext_len({ct_len})", plaintext_len(ct_len), plain_len)
    for bad in [0, 27, 28, 43, 28 + SEG_CT + 1, 28 + SEG_CT + 16, 28 + 2 * SEG_CT + 16]:
        expect_error("malformed", plaintext_len, bad)
    for pl in list(range(0, 200)) + [SEG * k + d for k in range(1, 5) for d in (-1, 0, 1)] + [1 << 40]:
        expect_equal(f"inverse {pl}", plaintext_len(ciphertext_len(pl)), pl)
    expect_equal("segments", [segment_count(x) for x in (0, 1, SEG, SEG + 1)], [1, 1, 1, 2])
    expect_equal("range plan", range_plan(3 * SEG, SEG - 1, 2)[:2], (0, 2))
    expect_equal("range plan", range_plan(SEG + 1, SEG, 10), (1, 2, 28 + SEG_CT, 28 + SEG_CT + 17))
    expect_equal("empty range", range_plan(10, 10, 1)[:2], (0, 0))

    v = load("content_three_segments")
    key = h(v, "content_key")
    binding = Binding(parse_id(v["file"]), parse_id(v["object"]), int(v["offset"]))
    ct = (VECTOR_DIR / v["ciphertext_file"]).read_bytes()
    n = int(v["plaintext_len"])
    bad_magic = b"X" + ct[1:]
    expect_error("malformed", decrypt_object, key, binding, bad_magic, n)
    expect_error("length", decrypt_object, key, binding, ct[:-1], n)
    seed_flip = bytearray(ct)
    seed_flip[10] ^= 1
    expect_error("authentication", decrypt_object, key, binding, bytes(seed_flip), n)
    expect_error("authentication", decrypt_object, key, Binding(binding.file, bytes(16), binding.offset), ct, n)
    # A segment spliced in from another object (another seed) fails.
    other = encrypt_object(key, binding, pattern(n), bytes([0x34]) * 24)
    spliced = ct[: 28 + SEG_CT] + other[28 + SEG_CT : 28 + 2 * SEG_CT] + ct[28 + 2 * SEG_CT :]
    expect_error("authentication", decrypt_object, key, binding, spliced, n)
    # A range read of a tampered segment fails; of an untouched one it succeeds.
    _, _, start, stop = range_plan(n, SEG, 10)
    t = bytearray(ct)
    t[start + 3] ^= 1
    expect_error("authentication", decrypt_range, key, binding, ct[:28], n, SEG, 10, bytes(t[start:stop]))
    expect_error("length", decrypt_range, key, binding, ct[:28], n, SEG, 10, ct[start : stop - 1])
    _, _, s0, e0 = range_plan(n, 0, 10)
    expect_equal("untouched range", decrypt_range(key, binding, ct[:28], n, 0, 10, bytes(t[s0:e0])), pattern(10))
    # The empty object's single tag is verified.
    e = load("content_empty")
    ect = (VECTOR_DIR / e["ciphertext_file"]).read_bytes()
    t = bytearray(ect)
    t[-1] ^= 1
    expect_error("authentication", decrypt_object, key, binding, bytes(t), 0)


DERIVED = [
    ("framing and HKDF", derived_framing),
    ("KDF parameter bounds", derived_kdf_bounds),
    ("sealed box and key wrap", derived_sealed_box),
    ("recovery key written form", derived_recovery),
    ("names: validation, padding, tag", derived_names),
    ("attribute records: decoding and validation", derived_records),
    ("content: lengths, header, splicing, ranges", derived_content),
]


def main() -> int:
    paths = sorted(VECTOR_DIR.glob("*.json"))
    if not paths:
        print(f"error: no vectors under {VECTOR_DIR} (run from the repository root)")
        print("0 passed, 1 failed")
        return 1
    passed = failed = 0
    for path in paths:
        try:
            ok, msg = check_vector(path)
        except Exception as e:  # a broken vector file or a bug here
            ok, msg = False, f"crashed: {type(e).__name__}: {e}"
            traceback.print_exc()
        print(f"{'PASS' if ok else 'FAIL'} vector {path.stem}: {msg}")
        passed, failed = passed + ok, failed + (not ok)
    for name, fn in DERIVED:
        try:
            fn()
            ok, msg = True, "ok"
        except (FormatError, Mismatch) as e:
            ok, msg = False, str(e)
        except Exception as e:
            ok, msg = False, f"crashed: {type(e).__name__}: {e}"
            traceback.print_exc()
        print(f"{'PASS' if ok else 'FAIL'} derived {name}: {msg}")
        passed, failed = passed + ok, failed + (not ok)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
