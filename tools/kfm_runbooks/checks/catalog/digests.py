"""Declared digests as catalogs write them, and streamed verification of files against them.

Two notations are understood:

- KFM's `sha256:<64 hex>`;
- the STAC File extension's `file:checksum`: a multihash in hex, `<code><length><digest>`
  with varint code and length (`1220` + 64 hex is sha2-256, `1340` + 128 hex sha2-512).

A multihash of another algorithm is not guessed at: it is `UNSUPPORTED` (HOLD) and the
message names the algorithm. Stub values KFM has used (`REPLACE_SHA256`, `<fill_me>`,
all-zero digests) are `PLACEHOLDER`: a finding, never a value to compare against.
Files are hashed in 1 MiB chunks, never read whole.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ... import digest_memo
from ..._fs import open_regular

# multihash code -> (name, digest length in bytes, hashlib name)
VERIFIABLE = {0x12: ("sha2-256", 32, "sha256"), 0x13: ("sha2-512", 64, "sha512")}
# codes from the multicodec table, to name what cannot be verified here
NAMES = {
    0x00: "identity",
    0x11: "sha1",
    0x14: "sha3-512",
    0x15: "sha3-384",
    0x16: "sha3-256",
    0x17: "sha3-224",
    0x18: "shake-128",
    0x19: "shake-256",
    0x1A: "keccak-224",
    0x1B: "keccak-256",
    0x1C: "keccak-384",
    0x1D: "keccak-512",
    0x1E: "blake3",
    0x20: "sha2-384",
    0x22: "murmur3-x64-64",
    0xD5: "md5",
    0x1012: "sha2-256-trunc254-padded",
    0x1013: "sha2-224",
    0x1014: "sha2-512-224",
    0x1015: "sha2-512-256",
    0xB220: "blake2b-256",
    0xB240: "blake2b-512",
    0xB260: "blake2s-256",
}
PLACEHOLDER_RE = re.compile(
    r"replace|fill[_ -]?me|placeholder|changeme|todo|tbd|<[^>]*>|x{8,}", re.IGNORECASE
)
_HEX_RE = re.compile(r"[0-9a-fA-F]+")

OK, PLACEHOLDER, UNSUPPORTED, INVALID = "ok", "placeholder", "unsupported", "invalid"


@dataclass(frozen=True)
class Declared:
    """What a checksum field declares: a verdict on the notation and, if usable, the digest."""

    status: str  # ok | placeholder | unsupported | invalid
    algorithm: str = ""  # multihash name (sha2-256, ...) or what it could not be
    hashlib_name: str = ""
    hexdigest: str = ""
    message: str = ""

    @property
    def usable(self) -> bool:
        return self.status == OK


def _varint(data: bytes, start: int) -> tuple[int, int] | None:
    value, shift = 0, 0
    for index in range(start, min(len(data), start + 9)):
        byte = data[index]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, index + 1
        shift += 7
    return None


def _zeros(hexdigest: str) -> bool:
    return set(hexdigest) <= {"0"}


def parse(value: object) -> Declared:
    """Classify a declared checksum (`sha256:<hex>` or a hex multihash)."""
    if not isinstance(value, str) or not value.strip():
        return Declared(INVALID, message="no checksum value")
    text = value.strip()
    if PLACEHOLDER_RE.search(text):
        return Declared(PLACEHOLDER, message=f"placeholder checksum {text[:40]!r}")
    if text.lower().startswith("sha256:"):
        digest = text[7:]
        if len(digest) != 64 or not _HEX_RE.fullmatch(digest):
            return Declared(INVALID, "sha2-256", message="sha256: needs 64 hex digits")
        if _zeros(digest):
            return Declared(PLACEHOLDER, "sha2-256", message="all-zero sha256 digest")
        return Declared(OK, "sha2-256", "sha256", digest.lower())
    if not _HEX_RE.fullmatch(text) or len(text) % 2:
        return Declared(INVALID, message=f"not sha256:<hex> nor a hex multihash: {text[:40]!r}")
    data = bytes.fromhex(text)
    code = _varint(data, 0)
    length = _varint(data, code[1]) if code else None
    if code is None or length is None:
        return Declared(INVALID, message="multihash header is not two varints")
    raw = data[length[1] :]
    name = VERIFIABLE.get(code[0], (NAMES.get(code[0], f"multihash code 0x{code[0]:x}"),))[0]
    if len(raw) != length[0]:
        return Declared(
            INVALID, name, message=f"{name}: declares {length[0]} bytes, has {len(raw)}"
        )
    if code[0] not in VERIFIABLE:
        return Declared(
            UNSUPPORTED, name, message=f"digest algorithm {name} is not verifiable here"
        )
    _, size, hashlib_name = VERIFIABLE[code[0]]
    if length[0] != size:
        return Declared(INVALID, name, message=f"{name} digests are {size} bytes, not {length[0]}")
    if _zeros(raw.hex()):
        return Declared(PLACEHOLDER, name, message=f"all-zero {name} digest")
    return Declared(OK, name, hashlib_name, raw.hex())


def file_hexdigest(path: Path, hashlib_name: str) -> str:
    """The file's digest, streamed in 1 MiB chunks."""
    return file_digest(path, hashlib_name, reuse=False)[0]


def file_digest(path: Path, hashlib_name: str, *, reuse: bool = True) -> tuple[str, bool]:
    """(the file's digest, whether it was reused): with `reuse`, a digest this process
    computed for the same file in the same state (digest_memo.py) is returned unread."""
    key = str(Path(path).absolute())
    with os.fdopen(open_regular(path), "rb") as stream:  # links refused: OSError
        before = digest_memo.stat_key(os.fstat(stream.fileno()))
        if reuse:
            known = digest_memo.lookup(key, hashlib_name, before)
            if known is not None:
                return known, True
        digest = hashlib.new(hashlib_name)
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
        after = digest_memo.stat_key(os.fstat(stream.fileno()))
    value = digest.hexdigest()
    digest_memo.remember(key, hashlib_name, before, after, value)
    return value, False
