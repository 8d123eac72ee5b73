"""An in-toto v1 attestation per run, in a DSSE envelope signed with the ledger's key.

`10_evidence/runs/<run>.intoto.json` sits beside the PROV document and is hashed, recorded
and chained like it. The Statement's subjects are the run's other evidence files (the
executed notebook, the target copy, the PROV document, extra files) with their sha256; the
predicate (`PREDICATE_TYPE`) holds the runbook id and digest, the parameters as sealed
(after redaction), the outcome, the checks, the actor, the times and the code digests
(`code`: the run entry's code provenance when it carries one).

The envelope (https://github.com/secure-systems-lab/dsse) is signed with the signing key
(signing.py) loaded by `cryptography` (an ed25519 OpenSSH private key without a
passphrase): the DSSE signature is over PAE(payloadType, payload). No key, a key only an
agent holds, or another key type: no attestation, and the run says why
(`RunResult.attestation`, the ledger entry's `attestation` field).

`check` verifies an envelope against the public key inside the entry's SSH signature
(which `verify --allowed-signers` ties to a person) and the entry's recorded outputs.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from . import signing
from .signing import fingerprint, read_string, signer_public_key

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://github.com/kfm/kfm-runbooks/attestation/run/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
SUFFIX = ".intoto.json"


class NoAttestation(Exception):
    """Why this run gets no attestation (said plainly, never an error: evidence first)."""


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 Pre-Authentication Encoding."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def statement(subjects: list[tuple[str, str]], predicate: dict[str, Any]) -> dict[str, Any]:
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": digest}} for name, digest in subjects],
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate,
    }


def _private_key(key: str | None) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_ssh_private_key

    if key is None:
        raise NoAttestation("no signing key configured")
    if key.startswith("key::"):
        raise NoAttestation("the signing key is held by ssh-agent only (DSSE needs the key file)")
    try:
        data = Path(key).expanduser().read_bytes()
    except OSError as exc:
        raise NoAttestation(f"signing key {key} unreadable ({exc.strerror})") from exc
    try:
        private = load_ssh_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise NoAttestation(
            f"signing key {key} cannot be loaded without its passphrase ({exc})"
        ) from exc
    if not isinstance(private, Ed25519PrivateKey):
        raise NoAttestation(f"signing key {key} is not ed25519 (attestations are ed25519 only)")
    return private


def _public_blob(private: Any) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    line = private.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
    return base64.b64decode(line.split()[1])


def envelope(document: dict[str, Any], key: str | None) -> bytes:
    """The signed DSSE envelope as file bytes, or NoAttestation saying why not."""
    private = _private_key(key)
    payload = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    signature = private.sign(pae(PAYLOAD_TYPE, payload))
    wrapped = {
        "payload": base64.b64encode(payload).decode(),
        "payloadType": PAYLOAD_TYPE,
        "signatures": [
            {
                "keyid": fingerprint(_public_blob(private)),
                "sig": base64.b64encode(signature).decode(),
            }
        ],
    }
    return (json.dumps(wrapped, indent=2, sort_keys=True) + "\n").encode()


def build(
    files: list[tuple[str, bytes]], predicate: dict[str, Any], prov_rel: str
) -> tuple[str, bytes]:
    """(workspace-relative path beside the PROV document, envelope bytes) for these files."""
    subjects = [
        (rel.removeprefix("10_evidence/"), hashlib.sha256(data).hexdigest()) for rel, data in files
    ]
    rel = prov_rel.removesuffix(".prov.json") + SUFFIX
    return rel, envelope(statement(subjects, predicate), signing.configured_key())


# --- checking -----------------------------------------------------------------------------


def check(data: bytes, entry: dict[str, Any], rel: str) -> list[str]:
    """Problems with one recorded attestation: its signature (by the key that signed the
    ledger entry) and its subjects (exactly the other files the entry recorded)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_ssh_public_key

    try:
        wrapped = json.loads(data)
        payload = base64.b64decode(wrapped["payload"], validate=True)
        kind = wrapped["payloadType"]
        signatures = wrapped["signatures"]
        document = json.loads(payload)
    except (ValueError, KeyError, TypeError):
        return [f"{rel}: not a DSSE envelope with an in-toto statement"]
    problems: list[str] = []
    if kind != PAYLOAD_TYPE or not isinstance(document, dict):
        return [f"{rel}: payload type {kind!r} is not {PAYLOAD_TYPE}"]
    if document.get("_type") != STATEMENT_TYPE or document.get("predicateType") != PREDICATE_TYPE:
        problems.append(f"{rel}: not a kfm-runbooks in-toto v1 statement")
    sig = entry.get("sig")
    if not isinstance(sig, dict) or not isinstance(sig.get("signature"), str):
        return [*problems, f"{rel}: its ledger entry is unsigned, so nothing ties it to a key"]
    try:
        blob = signer_public_key(sig["signature"])
        public = load_ssh_public_key(b"%b %b" % (read_string(blob, 0)[0], base64.b64encode(blob)))
    except (ValueError, TypeError):
        return [*problems, f"{rel}: the entry's signature carries no usable public key"]
    good = False
    for item in signatures if isinstance(signatures, list) else []:
        try:
            raw = base64.b64decode(item["sig"], validate=True)
            if isinstance(public, Ed25519PublicKey):
                public.verify(raw, pae(kind, payload))
                good = item.get("keyid") == fingerprint(blob)
        except (InvalidSignature, ValueError, KeyError, TypeError):
            continue
    if not good:
        problems.append(
            f"{rel}: DSSE signature does not verify with the key that signed ledger entry "
            f"{entry['seq']}: attestation forged or altered"
        )
    recorded = {
        str(o.get("path")): str(o.get("sha256"))
        for o in entry["data"].get("outputs") or []
        if isinstance(o, dict) and o.get("path") != rel.removeprefix("10_evidence/")
    }
    subjects: dict[str, str] = {}
    for item in document.get("subject") or []:
        if isinstance(item, dict) and isinstance(item.get("digest"), dict):
            subjects[str(item.get("name"))] = str(item["digest"].get("sha256"))
    if subjects != recorded:
        differ = sorted(set(subjects.items()) ^ set(recorded.items()))
        problems.append(
            f"{rel}: subjects differ from the files ledger entry {entry['seq']} recorded "
            f"({differ[0][0]})"
        )
    predicate = document.get("predicate")
    run_id = entry["data"].get("run_id")
    if not isinstance(predicate, dict) or predicate.get("run_id") != run_id:
        problems.append(f"{rel}: predicate does not name run {run_id}")
    elif predicate.get("incident") != entry["incident"]:
        problems.append(f"{rel}: predicate names {predicate.get('incident')}, another incident")
    return problems
