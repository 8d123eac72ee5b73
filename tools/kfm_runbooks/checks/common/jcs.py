"""RFC 8785 JSON Canonicalization Scheme (JCS), the one behind every KFM `spec_hash`.

Backed by Trail of Bits' `rfc8785` (pure Python): keys sorted by their UTF-16 code units,
no whitespace, ECMAScript number formatting (``1.0`` -> ``1``, ``1e21`` -> ``1e+21``,
``-0`` -> ``0``), minimal string escaping, UTF-8. Values outside the I-JSON domain the RFC
admits have no canonical form and raise `CanonicalizationError`: NaN / infinities, lone
surrogates, non-string keys, non-JSON types, and integers beyond +-(2**53 - 1) (a JSON
parser that follows the RFC reads those as doubles and loses digits: a document carrying
one cannot prove its identity, so its spec_hash check fails closed).

`content_bytes` is for fingerprints of data that is not I-JSON by nature (graph
properties holding 64-bit integers): JCS, except that such integers are written with all
their digits. It is never a spec_hash.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from typing import Any

import rfc8785

INT_MAX = 2**53 - 1
INT_MIN = -(2**53) + 1


class CanonicalizationError(ValueError):
    """A value outside the JSON domain RFC 8785 admits; the message says which."""


def canonical_bytes(value: Any) -> bytes:
    """RFC 8785 canonical UTF-8 bytes of a JSON value (CanonicalizationError outside it)."""
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as exc:
        raise CanonicalizationError(str(exc)) from exc
    except RecursionError as exc:
        raise CanonicalizationError("nesting too deep to canonicalize") from exc


def spec_hash(value: Any) -> str:
    """KFM's spec_hash: ``sha256:`` + the hex SHA-256 of the value's RFC 8785 bytes."""
    return "sha256:" + hashlib.sha256(canonical_bytes(value)).hexdigest()


def spec_hash_without(value: dict[str, Any], *fields: str) -> str:
    """The spec_hash of a document minus its own identity fields (`spec_hash`, ids)."""
    return spec_hash({key: item for key, item in value.items() if key not in fields})


def content_bytes(value: Any) -> bytes:
    """JCS bytes, with integers outside I-JSON's range written exactly (fingerprints only)."""
    marker = f"\x00int:{uuid.uuid4().hex}:"
    found = False

    def swap(node: Any, depth: int = 0) -> Any:
        nonlocal found
        if depth > 500:
            raise CanonicalizationError("nesting too deep to canonicalize")
        if isinstance(node, bool) or not isinstance(node, int | list | tuple | dict):
            return node
        if isinstance(node, int):
            if INT_MIN <= node <= INT_MAX:
                return node
            found = True
            return f"{marker}{int(node)}\x00"
        if isinstance(node, dict):
            return {key: swap(item, depth + 1) for key, item in node.items()}
        return [swap(item, depth + 1) for item in node]

    data = canonical_bytes(swap(value))
    if not found:
        return data
    escaped = re.escape(canonical_bytes(marker)[:-1])  # the quoted marker, open-ended
    return re.sub(escaped + rb"(-?\d+)\\u0000\"", lambda m: m.group(1), data)


# --- KFM's legacy sorted-keys JSON (a persisted producer format, not RFC 8785) ----------

# The names KFM's contracts give RFC 8785 + SHA-256 (canonicalization_profile, hash_profile).
JCS_PROFILES = frozenset({"RFC8785-JCS", "RFC8785-JCS+SHA-256", "kfm-jcs-sha256-v1"})


def legacy_sorted_bytes(value: Any) -> bytes:
    """Python's ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)``.

    Not RFC 8785 (``18.0`` stays ``18.0``, keys sort by code point): it is the form KFM's
    watcher gate producer hashes packets and gate profiles with (the KFM fixtures prove it).
    Only `spec_hash_matches` uses it, for documents that do not declare a profile.
    """
    try:
        text = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        return text.encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        raise CanonicalizationError(str(exc).split("\n")[0]) from exc
    except UnicodeEncodeError as exc:
        raise CanonicalizationError("lone surrogate in string") from exc


def spec_hash_matches(declared: Any, subject: Any, profile: Any = None) -> bool:
    """Does `declared` identify `subject`? RFC 8785 always; KFM's legacy sorted-keys form
    too when the document declares no profile (a changed byte changes both: no weaker).
    A declared profile other than RFC 8785 never matches (unknown: cannot be proven)."""
    if not isinstance(declared, str):
        return False
    if profile is not None and profile not in JCS_PROFILES:
        return False
    for form in (canonical_bytes, legacy_sorted_bytes) if profile is None else (canonical_bytes,):
        try:
            if declared == "sha256:" + hashlib.sha256(form(subject)).hexdigest():
                return True
        except CanonicalizationError:
            continue
    return False


def content_hash(value: Any) -> str:
    """``sha256:`` of `content_bytes`: a fingerprint of a value, never a spec_hash."""
    return "sha256:" + hashlib.sha256(content_bytes(value)).hexdigest()
