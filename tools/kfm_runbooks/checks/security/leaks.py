"""Secret exposure: credentials in files, logs and configs; rotation list; reversible redaction.

What is found, and with which code:
- `SEC_SECRET_EXPOSED`: a credential-shaped value (the project's patterns, `redact.find`;
  plus secret-named keys with literal values in JSON / YAML / env-style configs).
- `SECRET_PERSISTENCE_DENIED` (KFM's webhook-ingress code): a record declares that raw
  secret material was persisted (`raw_secret_persisted`, `raw_signature_persisted`, ...
  or `credentials_embedded` set to anything but `false`).
- `OCCURRENCE_RETRIEVAL_QUERY_SECRET_VALUE_DENIED` (KFM's query-safety code): a query
  predicate carries authorization material (password, secret, api key, token, bearer...).

A secret's value never leaves this module: an `Exposure` holds its kind, file, line and a
fingerprint (`fp:` + 8 hex of its sha256), nothing else. Containment writes a rotation
checklist (one entry per credential kind, fingerprints only) and quarantines each exposed
file: the original bytes go to a private quarantine folder (mode 0700/0600) and the file is
rewritten with every secret replaced by `[REDACTED:<kind>:<fp>]` - or withdrawn entirely
when the exposure cannot be cut out (a persisted-secret declaration). Both are undone by
`kfm-runbook rollback`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ... import redact
from ..._fs import create_new, replace_atomic, sha256_bytes
from ..._time import now_iso
from ...target import Target
from .. import BLOCKING, HOLD, Finding, undoable
from ..common.json import pointer
from .base import (
    fingerprint,
    inside,
    parse_json,
    parse_yaml,
    private_folder,
    read_bytes,
    read_json,
    read_yaml,
    rel,
    walk_files,
    write_yaml,
)

EXPOSED = "SEC_SECRET_EXPOSED"
PERSISTED = "SECRET_PERSISTENCE_DENIED"
QUERY_SECRET = "OCCURRENCE_RETRIEVAL_QUERY_SECRET_VALUE_DENIED"  # noqa: S105 - a finding code
EXPOSURE_CODES = frozenset({EXPOSED, PERSISTED, QUERY_SECRET})
MARKER_PREFIX = "[REDACTED:"

# Keys whose literal value is a credential (with any prefix: db_password, webhook_secret).
_SECRET_KEY = re.compile(
    r"(?i)^(?:[a-z0-9]+[_.-])*(?:password|passwd|pwd|secret|client[_-]?secret|api[_-]?key|"
    r"apikey|access[_-]?token|auth[_-]?token|refresh[_-]?token|private[_-]?key|"
    r"secret[_-]?key|secret[_-]?access[_-]?key|token)$"
)
# Values that point at a secret instead of being one.
_REFERENCE = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|\$\{|\{\{|\$[A-Z_]|arn:|env:|ref:)", re.I)
# Flags that say raw secret material was kept (KFM webhook-ingress / retrieval contracts).
_PERSISTED_KEY = re.compile(
    r"^(?:raw_(?:secret|signature|nonce|token|credential|key|password)s?_persisted|"
    r"secrets?_persisted|credentials_embedded)$"
)
# KFM query-safety secret markers (authorization material inside a query predicate).
_SECRET_MARKER = re.compile(
    r"(?i)(?:^|[^a-z0-9])(?:password|passwd|secret|api[_-]?key|access[_-]?token|"
    r"refresh[_-]?token|authorization|bearer)(?:$|[^a-z0-9])"
)
_ENV_LINE = re.compile(r"^[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_.-]*)[ \t]*[=:][ \t]*(.*)$")
_ENV_SUFFIXES = (".env", ".ini", ".cfg", ".conf", ".properties")

ROTATION_PROCEDURES: dict[str, str] = {
    "private-key": "revoke the key pair wherever its public half is trusted (deploy keys, TLS, "
    "SSH); issue a new pair from the secret store; destroy the exposed private half",
    "aws-access-key-id": "IAM: deactivate the access key, create a new key for the same "
    "principal, update the secret-store reference, delete the old key once nothing uses it",
    "aws-secret-access-key": "IAM: the secret belongs to an access key — deactivate that key, "
    "create a new one, update the secret-store reference, delete the old key",
    "github-token": "revoke the token (GitHub settings > developer settings); issue a "
    "fine-grained token with the least scope; audit its use in the security log",
    "slack-token": "revoke the token in the Slack app's OAuth settings; reinstall the app",
    "google-api-key": "Google Cloud console: regenerate the key, restrict it by API and referrer",
    "stripe-key": "Stripe dashboard: roll the key; review API request logs for misuse",
    "jwt": "revoke the session; if long-lived, rotate the signing key that issued it",
    "url-credentials": "change the account's password; move the URL to a secret-store reference",
    "assigned-secret": "rotate the password / key at its issuer; load it from the secret store",
    "bearer-token": "revoke the token at its issuer (or rotate the issuing key); check its use",
    "basic-auth": "change the account's password at its issuer; move the header's credential "
    "to the secret store; check the service's access log for its use",
    "cli-credentials": "change the password at its issuer; pass it from the secret store or a "
    "0600 file, never on a command line",
    "pgp-private-key": "publish the key's revocation certificate; issue a new key from the "
    "secret store; re-sign what the old key signed",
    "secret-marker": "treat the value as a live credential: revoke it at its issuer; keep "
    "authorization material out of query predicates",
    "persisted-secret": "rotate the referenced key (credential_ref) at its issuer; purge the "
    "persisted raw copy from every store that received it",
}


@dataclass(frozen=True, order=True)
class Exposure:
    """One exposed credential, described without its value."""

    file: str  # relative to the target base
    line: int  # 1-based; 0 when it has no line (a declaration)
    code: str
    kind: str
    pointer: str = ""  # JSON pointer inside a structured record
    fingerprint: str = ""
    credential_ref: str = ""  # a reference to the credential (kms://...), never its value
    redactable: bool = True

    def as_finding(self) -> Finding:
        where = self.pointer or (f":{self.line}" if self.line else "/")
        what = f"{self.kind}, fingerprint {self.fingerprint}" if self.fingerprint else self.kind
        if self.credential_ref:
            what += f", credential {self.credential_ref}"
        return Finding(self.code, self.file, where, BLOCKING, what)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SecretsConfig:
    """Where to look and where containment writes, from the target's `security_secrets` section."""

    base: Path  # nothing outside it is read or written
    paths: tuple[Path, ...]
    quarantine: Path
    rotation: Path

    @classmethod
    def from_target(cls, target: Target) -> SecretsConfig:
        target.section("security_secrets")
        base = target.resolve("security_secrets", "base", required=False) or target.base
        paths = tuple(target.resolve_many("security_secrets", "paths"))
        if not paths:
            from ...errors import TargetError

            raise TargetError(f"target {target.path}: security_secrets.paths lists nothing to scan")
        quarantine = target.resolve("security_secrets", "quarantine", required=False)
        rotation = target.resolve("security_secrets", "rotation", required=False)
        return cls(
            base=base,
            paths=paths,
            quarantine=quarantine or base / ".kfm-quarantine" / "secrets",
            rotation=rotation or base / "rotation-checklist.yaml",
        )


@dataclass
class SecretScan:
    exposures: list[Exposure]
    files_scanned: int
    unscanned: list[Finding] = field(default_factory=list)

    @property
    def findings(self) -> list[Finding]:
        return [e.as_finding() for e in self.exposures] + self.unscanned

    def by_file(self) -> dict[str, list[Exposure]]:
        out: dict[str, list[Exposure]] = {}
        for item in self.exposures:
            out.setdefault(item.file, []).append(item)
        return out

    def kinds(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for item in self.exposures:
            counts[item.kind] = counts.get(item.kind, 0) + 1
        return dict(sorted(counts.items()))


# --- finding spans (internal: the only place that sees a value) ---------------------------


@dataclass(frozen=True)
class _Span:
    start: int
    end: int
    kind: str
    code: str = EXPOSED
    pointer: str = ""


def _value(kind: str, raw: str) -> str:
    """The credential itself inside a matched span (`Bearer <token>` -> `<token>`)."""
    if kind == "bearer-token":
        return re.sub(r"(?i)^bearer\s+", "", raw)
    return raw


def _is_literal_secret(value: Any) -> bool:
    return (
        isinstance(value, str)
        and len(value) >= 8
        and not any(ch.isspace() for ch in value)
        and not value.startswith(MARKER_PREFIX)
        and not _REFERENCE.match(value)
    )


def _walk(value: Any, parts: tuple[Any, ...] = (), seen: set[int] | None = None) -> Any:
    """(path parts, key as text, value) for every member of a JSON/YAML tree.

    A container shared through YAML aliases is walked once (no alias-bomb blow-up).
    """
    seen = set() if seen is None else seen
    if isinstance(value, dict | list):
        if id(value) in seen:
            return
        seen.add(id(value))
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*parts, key), str(key), item
            yield from _walk(item, (*parts, key), seen)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*parts, index), "", item
            yield from _walk(item, (*parts, index), seen)


def _locate(text: str, literal: str, encoded: str) -> list[tuple[int, int]]:
    """Every occurrence of a value in the raw text (JSON-encoded form first)."""
    spans: list[tuple[int, int]] = []
    for needle in dict.fromkeys((encoded, literal)):
        start = text.find(needle) if needle else -1
        while start >= 0:
            spans.append((start, start + len(needle)))
            start = text.find(needle, start + len(needle))
        if spans:
            break
    return spans


def _structured_spans(
    text: str, doc: Any, is_json: bool
) -> tuple[list[_Span], list[tuple[str, str, str]]]:
    """Spans of literal secrets under secret-named keys and in KFM query predicates, and
    the declarations that cannot be cut out: (code, pointer, credential ref)."""
    spans: list[_Span] = []
    declarations: list[tuple[str, str, str]] = []

    def add(value: str, kind: str, code: str, where: str) -> None:
        encoded = json.dumps(value, ensure_ascii=False)[1:-1] if is_json else value
        located = _locate(text, value, encoded)
        if not located:
            declarations.append((code, where, ""))
        for start, end in located:
            spans.append(_Span(start, end, kind, code, where))

    for parts, key, value in _walk(doc):
        where = pointer(parts)
        if _PERSISTED_KEY.match(key) and value is True:
            parent: Any = doc
            for part in parts[:-1]:
                parent = parent[part]
            ref = parent.get("key_ref") if isinstance(parent, dict) else None
            declarations.append((PERSISTED, where, ref if isinstance(ref, str) else ""))
        elif _SECRET_KEY.match(key) and _is_literal_secret(value):
            add(value, "assigned-secret", EXPOSED, where)
    query = doc.get("query_snapshot") if isinstance(doc, dict) else None
    predicates = query.get("predicates") if isinstance(query, dict) else None
    for index, predicate in enumerate(predicates if isinstance(predicates, list) else []):
        if not isinstance(predicate, dict):
            continue
        base = f"/query_snapshot/predicates/{index}"
        name = predicate.get("field")
        if isinstance(name, str) and _SECRET_MARKER.search(name):
            declarations.append((QUERY_SECRET, f"{base}/field", ""))
        values = [((), "", predicate.get("value")), *_walk(predicate.get("value"))]
        for parts, _key, value in values:
            if isinstance(value, str) and _SECRET_MARKER.search(value):
                where = f"{base}/value" + (pointer(parts) if parts else "")
                add(value, "secret-marker", QUERY_SECRET, where)
    return spans, declarations


def _env_spans(text: str) -> list[_Span]:
    spans: list[_Span] = []
    offset = 0
    for line in text.splitlines(keepends=True):
        match = _ENV_LINE.match(line.rstrip("\r\n"))
        if match and _SECRET_KEY.match(match.group(1)):
            raw = match.group(2).strip()
            value = raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"" else raw
            if _is_literal_secret(value):
                start = offset + line.index(value, match.start(2))
                spans.append(_Span(start, start + len(value), "assigned-secret"))
        offset += len(line)
    return spans


def _spans(path: Path, data: bytes) -> tuple[str, list[_Span], list[tuple[str, str, str]]]:
    text = data.decode("utf-8", errors="replace")
    spans = [_Span(s, e, kind) for kind, s, e in redact.find(text)]
    declarations: list[tuple[str, str, str]] = []
    suffix = path.suffix.lower()
    doc: Any = None
    if suffix == ".json":
        doc, _ = parse_json(data)
    elif suffix in (".yaml", ".yml"):
        doc, _ = parse_yaml(data)
    if doc is not None:
        more, declarations = _structured_spans(text, doc, suffix == ".json")
        spans += more
    if suffix in _ENV_SUFFIXES or path.name.startswith(".env"):
        spans += _env_spans(text)
    # Widest match first at each position (KFM's contract codes before our generic one);
    # drop overlaps and values that are already redaction markers.
    kept: list[_Span] = []
    position = -1
    for span in sorted(spans, key=lambda s: (s.start, -s.end, s.code == EXPOSED)):
        if span.start < position or text[span.start : span.end].startswith(MARKER_PREFIX):
            continue
        kept.append(span)
        position = span.end
    return text, kept, declarations


def _exposures(path: Path, data: bytes, subject: str) -> list[Exposure]:
    text, spans, declarations = _spans(path, data)
    found = [
        Exposure(
            file=subject,
            line=text.count("\n", 0, span.start) + 1,
            code=span.code,
            kind=span.kind,
            pointer=span.pointer,
            fingerprint=fingerprint(_value(span.kind, text[span.start : span.end])),
        )
        for span in spans
    ]
    for code, where, ref in declarations:
        kind = "persisted-secret" if code == PERSISTED else "secret-marker"
        found.append(
            Exposure(
                file=subject,
                line=0,
                code=code,
                kind=kind,
                pointer=where,
                fingerprint=fingerprint(ref or f"{subject}#{where}"),
                credential_ref=ref,
                redactable=False,
            )
        )
    return sorted(found)


# --- scanning ---------------------------------------------------------------------------


def scan_file(path: Path, config: SecretsConfig) -> tuple[list[Exposure], Finding | None]:
    subject = rel(path, config.base)
    data, code = read_bytes(path)
    if data is None:
        return [], Finding(code or "SEC_FILE_READ_ERROR", subject, "/", HOLD, "not scanned")
    if b"\x00" in data[:8192]:
        return [], Finding("SEC_SCAN_BINARY_SKIPPED", subject, "/", HOLD, "binary: not scanned")
    return _exposures(path, data, subject), None


def scan(config: SecretsConfig) -> SecretScan:
    """Scan every file under the configured paths (the quarantine is left out)."""
    exposures: list[Exposure] = []
    unscanned: list[Finding] = []
    scanned = 0
    for path in walk_files(config.paths, config.base, skip=(config.quarantine,)):
        found, problem = scan_file(path, config)
        if problem is not None:
            unscanned.append(problem)
            continue
        scanned += 1
        exposures.extend(found)
    for root in config.paths:
        if not inside(root, config.base):
            unscanned.append(
                Finding("SEC_SCAN_PATH_ESCAPE", root.name, "/", HOLD, "outside the target base")
            )
        elif not root.exists() and not root.is_symlink():
            subject = rel(root, config.base)
            if quarantine_record(config, subject) is None:  # withdrawn files are accounted for
                unscanned.append(Finding("SEC_FILE_NOT_FOUND", subject, "/", HOLD, "path missing"))
    return SecretScan(sorted(exposures), scanned, sorted(unscanned))


# --- containment: rotation checklist ---------------------------------------------------


def load_rotation(config: SecretsConfig) -> dict[str, Any]:
    doc, _ = read_yaml(config.rotation) if config.rotation.exists() else ({}, None)
    doc = doc if isinstance(doc, dict) else {}
    if not isinstance(doc.get("rotate"), list):
        doc["rotate"] = []
    return doc


def rotation_fingerprints(config: SecretsConfig) -> set[str]:
    out: set[str] = set()
    for entry in load_rotation(config)["rotate"]:
        for cred in entry.get("credentials", []) if isinstance(entry, dict) else []:
            if isinstance(cred, dict) and isinstance(cred.get("fingerprint"), str):
                out.add(cred["fingerprint"])
    return out


def record_rotation(
    config: SecretsConfig, exposures: list[Exposure], incident: str
) -> dict[str, Any]:
    """Add one checklist entry per credential kind, one line per fingerprint. Idempotent."""
    doc = load_rotation(config)
    entries: dict[str, dict[str, Any]] = {
        e["kind"]: e for e in doc["rotate"] if isinstance(e, dict) and "kind" in e
    }
    added: list[list[str]] = []
    for item in sorted(exposures):
        entry = entries.get(item.kind)
        if entry is None:
            entry = {
                "kind": item.kind,
                "procedure": ROTATION_PROCEDURES.get(item.kind, "rotate it at its issuer"),
                "credentials": [],
            }
            entries[item.kind] = entry
            doc["rotate"].append(entry)
        creds = entry.setdefault("credentials", [])
        known = next((c for c in creds if c.get("fingerprint") == item.fingerprint), None)
        if known is None:
            creds.append(
                {
                    "fingerprint": item.fingerprint,
                    "files": [item.file],
                    "credential_ref": item.credential_ref,
                    "status": "pending",
                    "incident": incident,
                }
            )
            added.append([item.kind, item.fingerprint])
        elif item.file not in known.setdefault("files", []):
            known["files"].append(item.file)
    if added:
        doc.setdefault(
            "note",
            "Rotation checklist written by RBK-security-secret-exposure: fingerprints only, "
            "never a secret. Mark an entry done once the credential is rotated at its issuer.",
        )
        write_yaml(config.rotation, doc)
    return {"added": added, "entries": sum(len(e.get("credentials", [])) for e in doc["rotate"])}


def remove_rotation(config: SecretsConfig, added: list[list[str]]) -> dict[str, Any]:
    """Undo `record_rotation`: drop the given (kind, fingerprint) lines still pending."""
    doc = load_rotation(config)
    removed = 0
    wanted = {(k, f) for k, f in added}
    for entry in doc["rotate"]:
        creds = entry.get("credentials", [])
        keep = [
            c
            for c in creds
            if not (
                (entry.get("kind"), c.get("fingerprint")) in wanted and c.get("status") == "pending"
            )
        ]
        removed += len(creds) - len(keep)
        entry["credentials"] = keep
    doc["rotate"] = [e for e in doc["rotate"] if e.get("credentials")]
    if doc["rotate"]:
        write_yaml(config.rotation, doc)
    elif config.rotation.is_file():
        config.rotation.unlink()  # nothing left to rotate: the checklist goes with it
    return {"removed": removed}


# --- containment: quarantine + redaction ------------------------------------------------


def _slot(config: SecretsConfig, subject: str) -> Path:
    digest = hashlib.sha256(subject.encode()).hexdigest()[:10]
    name = re.sub(r"[^A-Za-z0-9._-]", "_", subject)[-60:].lstrip(".") or "file"
    return config.quarantine / f"{name}.{digest}"


def quarantine_record(config: SecretsConfig, subject: str) -> dict[str, Any] | None:
    record = _slot(config, subject) / "record.json"
    if not record.is_file():
        return None
    value, code = read_json(record)  # a link or oversized record raises, never followed
    if not isinstance(value, dict):
        raise ValueError(f"{subject}: the quarantine record cannot be read ({code})")
    return value


def quarantined(config: SecretsConfig) -> list[dict[str, Any]]:
    if not config.quarantine.is_dir():
        return []
    out = []
    for record in sorted(config.quarantine.glob("*/record.json")):
        value, code = read_json(record)
        if not isinstance(value, dict):
            raise ValueError(f"{record.parent.name}: the quarantine record cannot be read ({code})")
        out.append(value)
    return out


def redacted_text(path: Path, data: bytes) -> tuple[str | None, int]:
    """The file's text with every cut-out-able secret replaced, or None when the file
    holds a declaration that cannot be cut out (then it is withdrawn whole)."""
    text, spans, declarations = _spans(path, data)
    if declarations:
        return None, len(spans)
    out: list[str] = []
    position = 0
    for span in spans:
        out.append(text[position : span.start])
        raw = text[span.start : span.end]
        kept = raw[: len(raw) - len(_value(span.kind, raw))]  # e.g. the `Bearer ` prefix
        out.append(f"{kept}{MARKER_PREFIX}{span.kind}:{fingerprint(_value(span.kind, raw))}]")
        position = span.end
    out.append(text[position:])
    return "".join(out), len(spans)


def quarantine_file(
    config: SecretsConfig, subject: str, *, incident: str, exposures: list[Exposure]
) -> dict[str, Any]:
    """Keep the original bytes privately, then redact the file in place (or withdraw it).

    Idempotent: a file already quarantined and unchanged since is left alone.
    """
    path = config.base / subject
    if not inside(path, config.base):
        raise ValueError(f"{subject} is outside the target base")
    slot = _slot(config, subject)
    existing = quarantine_record(config, subject)
    data, code = read_bytes(path)
    if existing is not None:
        current = sha256_bytes(data) if data is not None else None
        if current == existing["sha256_after"]:
            return {**existing, "already": True}
        raise ValueError(
            f"{subject} was quarantined before and has changed since: restore it first "
            "(kfm-runbook rollback) or move the old quarantine record away"
        )
    if data is None:
        raise ValueError(f"{subject} cannot be read ({code})")
    redacted, count = redacted_text(path, data)
    private_folder(config.quarantine)
    private_folder(slot)
    create_new(slot / "original", data)
    (slot / "original").chmod(0o600)
    after = redacted.encode("utf-8") if redacted is not None else None
    record = {
        "path": subject,
        "mode": "redacted" if after is not None else "withdrawn",
        "sha256_before": sha256_bytes(data),
        "sha256_after": sha256_bytes(after) if after is not None else None,
        "secrets_redacted": count,
        "exposures": [e.as_dict() for e in sorted(exposures)],
        "incident": incident,
        "quarantined_at": now_iso(),
    }
    create_new(slot / "record.json", (json.dumps(record, indent=2) + "\n").encode())
    if after is not None:
        replace_atomic(path, after)
    else:
        path.unlink()
    return {**record, "already": False}


def restore_file(config: SecretsConfig, subject: str) -> dict[str, Any]:
    """Undo `quarantine_file`: put the original bytes back. Safe to run twice."""
    slot = _slot(config, subject)
    record = quarantine_record(config, subject)
    if record is None:
        return {"path": subject, "restored": False, "reason": "not quarantined"}
    path = config.base / subject
    data, _ = read_bytes(path)
    current = sha256_bytes(data) if data is not None else None
    if current != record["sha256_after"]:
        return {"path": subject, "restored": False, "reason": "file changed since quarantine"}
    original, code = read_bytes(slot / "original")
    if original is None:
        raise ValueError(f"{subject}: the quarantined original cannot be read ({code})")
    replace_atomic(path, original)
    (slot / "original").unlink()
    (slot / "record.json").unlink()
    slot.rmdir()
    return {"path": subject, "restored": True, "mode": record["mode"]}


@undoable("security_secrets.restore_file")
def _undo_restore_file(target: Target, path: str) -> dict[str, Any]:
    return restore_file(SecretsConfig.from_target(target), path)


@undoable("security_secrets.remove_rotation")
def _undo_remove_rotation(target: Target, added: list[list[str]]) -> dict[str, Any]:
    return remove_rotation(SecretsConfig.from_target(target), added)
