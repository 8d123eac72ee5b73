"""SSH signatures on ledger entries, made and checked by the real `ssh-keygen -Y`.

The key: `--sign-key PATH` (the CLI exports it), else `$KFM_SIGNING_KEY` (set but empty:
signing off), else git's `user.signingkey` when `git config gpg.format` is `ssh` (a path,
or `key::ssh-ed25519 ...` for a key held by ssh-agent). Only the key's *path* travels,
through the environment, to every process that appends (CLI, run worker, kernel,
JupyterLab); the key material never enters the ledger or the evidence.

What is signed (namespace `kfm-runbook`, the SSHSIG format git uses for signed commits)
is `message()`: the incident id, the entry's seq and its hash. The signature is the
entry's `sig` field, which is outside what `hash` covers (ledger.entry_hash), so the
chain verifies with or without it, and a signature copied from another incident's entry
names that incident.

`ssh-keygen` never prompts: it runs without a controlling terminal (new session), with
stdin from /dev/null and `SSH_ASKPASS_REQUIRE=never`; a passphrase-protected key not held
by an agent is a one-line error, and nothing is written.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError, SetupError

NAMESPACE = "kfm-runbook"
ENV = "KFM_SIGNING_KEY"
FORMAT = "sshsig"
TIMEOUT_S = 60.0
_SIG_KEYS = ("format", "namespace", "incident", "entry", "signature")


class SigningKeyError(InputError):
    """The configured signing key cannot sign (missing, passphrase without an agent)."""


def message(incident: str, seq: int, entry_hash: str) -> bytes:
    """The bytes a ledger entry's signature is over."""
    return f"kfm-runbook ledger entry\nincident {incident}\nseq {seq}\nhash {entry_hash}\n".encode()


def configured_key() -> str | None:
    """The signing key as configured (a path or `key::...`), or None: entries unsigned."""
    if ENV in os.environ:
        return os.environ[ENV].strip() or None
    return git_signing_key()


def git_signing_key() -> str | None:
    """git's `user.signingkey` when `gpg.format` is `ssh`, else None."""

    def get(name: str) -> str:
        try:
            done = subprocess.run(
                ["git", "config", "--get", name],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    if get("gpg.format") != "ssh":
        return None
    return get("user.signingkey") or None


def check_key(key: str) -> None:
    """SigningKeyError when a key path does not name a file (before anything is written)."""
    if key.startswith("key::"):
        return
    path = Path(key).expanduser()
    if not path.is_file():
        raise SigningKeyError(
            f"signing key {key} not found: point --sign-key / ${ENV} (or git's "
            f"user.signingkey) at an existing SSH private key, or set {ENV}= to write "
            "unsigned entries"
        )


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "SSH_ASKPASS")}
    env["SSH_ASKPASS_REQUIRE"] = "never"
    return env


def _ssh_keygen(args: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            ["ssh-keygen", *args],
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=TIMEOUT_S,
            start_new_session=True,  # no controlling terminal: ssh-keygen cannot prompt
            env=_env(),
            check=False,
        )
    except FileNotFoundError as exc:
        raise SetupError(
            "ssh-keygen not found: install openssh-client (`apt-get install openssh-client`) "
            "to sign or check ledger signatures"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise SetupError(f"ssh-keygen did not answer within {TIMEOUT_S:g}s") from exc


def _last_line(data: bytes) -> str:
    lines = [ln.strip() for ln in data.decode(errors="replace").splitlines() if ln.strip()]
    return lines[-1] if lines else "no message"


def sign(key: str, data: bytes) -> str:
    """An armored SSH signature over `data` (namespace kfm-runbook)."""
    check_key(key)
    with tempfile.TemporaryDirectory(prefix="kfm-sign-") as tmp:
        folder = Path(tmp)
        if key.startswith("key::"):
            key_file = folder / "key.pub"
            key_file.write_text(key.removeprefix("key::").strip() + "\n")
        else:
            key_file = Path(key).expanduser()
        payload = folder / "entry"
        payload.write_bytes(data)
        done = _ssh_keygen(["-Y", "sign", "-n", NAMESPACE, "-f", str(key_file), str(payload)])
        signature = folder / "entry.sig"
        if done.returncode != 0 or not signature.is_file():
            detail = _last_line(done.stderr)
            if "passphrase" in detail.lower():
                raise SigningKeyError(
                    f"signing key {key} is passphrase-protected and no ssh-agent holds it: "
                    f"run `ssh-add {key}` (with SSH_AUTH_SOCK set) or use a key without a "
                    "passphrase; nothing was written"
                )
            raise SigningKeyError(
                f"ssh-keygen could not sign with {key} ({detail}): check the key, or set "
                f"{ENV}= to write unsigned entries; nothing was written"
            )
        return signature.read_text()


def sign_entry(key: str, incident: str, seq: int, entry_hash: str) -> dict[str, str]:
    """The `sig` field of one ledger entry."""
    return {
        "format": FORMAT,
        "namespace": NAMESPACE,
        "incident": incident,
        "entry": entry_hash,
        "signature": sign(key, message(incident, seq, entry_hash)),
    }


# --- checking -----------------------------------------------------------------------------


def read_string(blob: bytes, at: int) -> tuple[bytes, int]:
    """One SSH wire-format string (uint32 length, bytes) at `at`: (bytes, next offset)."""
    if at + 4 > len(blob):
        raise ValueError("truncated")
    (size,) = struct.unpack(">I", blob[at : at + 4])
    end = at + 4 + size
    if end > len(blob):
        raise ValueError("truncated")
    return blob[at + 4 : end], end


def signer_public_key(armored: str) -> bytes:
    """The public key blob an SSHSIG signature carries (who claims to have made it)."""
    body = "".join(
        line.strip() for line in armored.strip().splitlines() if not line.startswith("-----")
    )
    blob = base64.b64decode(body, validate=True)
    if not blob.startswith(b"SSHSIG"):
        raise ValueError("not an SSH signature")
    public, _ = read_string(blob, 10)  # after the magic (6 bytes) and the version (4)
    return public


def fingerprint(public_blob: bytes) -> str:
    """OpenSSH's `SHA256:...` fingerprint of a public key blob (as `ssh-keygen -l` prints)."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(public_blob).digest()).decode().rstrip("=")


@dataclass
class SignatureReport:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    signers: list[dict[str, Any]] = field(default_factory=list)  # per entry: seq, signer, key
    signed: int = 0
    required: bool = False

    def summary(self, total: int) -> str:
        if not self.signed:
            return f"0 of {total} ledger entries signed"
        names = sorted({str(s["signer"]) for s in self.signers if s.get("signer")})
        return f"{self.signed} of {total} ledger entries signed" + (
            f" by {', '.join(names)}" if names else ""
        )


def _good_key(output: bytes) -> str | None:
    """The key fingerprint from ssh-keygen's `Good "..." signature ... key SHA256:...`."""
    text = output.decode(errors="replace")
    for line in text.splitlines():
        if line.startswith("Good ") and " key " in line:
            return line.rsplit(" key ", 1)[1].strip()
    return None


def verify_signature(
    signature: str,
    data: bytes,
    allowed_signers: Path | None,
    principals: dict[bytes, list[str]] | None = None,
) -> tuple[str | None, str | None, str | None]:
    """(principal, key fingerprint, problem). Without allowed signers, only that the
    signature is intact and made by the key it carries (`check-novalidate`). `principals`
    caches `find-principals` per public key (one lookup per signer, not per entry)."""
    try:
        blob = signer_public_key(signature)
    except ValueError:
        return None, None, "bad signature (not an SSH signature)"
    cache = {} if principals is None else principals
    with tempfile.TemporaryDirectory(prefix="kfm-verify-") as tmp:
        sig_file = Path(tmp) / "entry.sig"
        sig_file.write_text(signature)
        if allowed_signers is None:
            done = _ssh_keygen(
                ["-Y", "check-novalidate", "-n", NAMESPACE, "-s", str(sig_file)], data
            )
            if done.returncode != 0:
                return None, None, f"bad signature ({_last_line(done.stderr or done.stdout)})"
            return None, _good_key(done.stdout + done.stderr), None
        if blob not in cache:
            found = _ssh_keygen(
                ["-Y", "find-principals", "-s", str(sig_file), "-f", str(allowed_signers)]
            )
            listed = found.stdout.decode(errors="replace").splitlines()
            cache[blob] = [p.strip() for p in listed if p.strip()] if found.returncode == 0 else []
        names = cache[blob]
        if not names:
            check = _ssh_keygen(
                ["-Y", "check-novalidate", "-n", NAMESPACE, "-s", str(sig_file)], data
            )
            key = _good_key(check.stdout + check.stderr)
            if check.returncode != 0:
                return None, None, f"bad signature ({_last_line(check.stderr or check.stdout)})"
            return None, key, f"signed by key {key}, which is not in {allowed_signers.name}"
        principal = names[0]
        done = _ssh_keygen(
            [
                "-Y",
                "verify",
                "-f",
                str(allowed_signers),
                "-I",
                principal,
                "-n",
                NAMESPACE,
                "-s",
                str(sig_file),
            ],
            data,
        )
        if done.returncode != 0:
            return (
                principal,
                None,
                (
                    f"bad signature: it does not verify for {principal} "
                    f"({_last_line(done.stderr or done.stdout)}): entry or signature altered"
                ),
            )
        return principal, _good_key(done.stdout + done.stderr), None


def sig_problem(sig: Any, entry: dict[str, Any]) -> str | None:
    """Why an entry's `sig` field does not belong to that entry (None when it does)."""
    if not isinstance(sig, dict) or not all(isinstance(sig.get(k), str) for k in _SIG_KEYS):
        return "its signature field is malformed (format/namespace/incident/entry/signature)"
    if sig["format"] != FORMAT or sig["namespace"] != NAMESPACE:
        found = f"{sig['format']!r}/{sig['namespace']!r}"
        return f"signature format {found} is not {FORMAT}/{NAMESPACE}"
    if sig["incident"] != entry["incident"]:
        return (
            f"signature was made for an entry of {sig['incident']}, not {entry['incident']}: "
            "copied from another incident"
        )
    if sig["entry"] != entry["hash"]:
        return "signature was made for another entry (its hash differs): copied or rewritten"
    return None


def check_entries(
    entries: Iterable[dict[str, Any]],
    allowed_signers: Path | None,
) -> SignatureReport:
    """Every entry's signature, named per entry; the required/unsigned rules."""
    listed = list(entries)
    report = SignatureReport()
    report.required = bool(listed) and listed[0]["data"].get("require_signatures") is True
    first_signed: int | None = None
    unsigned_before: list[int] = []
    keys: set[str] = set()
    principals: dict[bytes, list[str]] = {}
    for entry in listed:
        seq = int(entry["seq"])
        where = f"ledger entry {seq}"
        sig = entry.get("sig")
        if sig is None:
            if report.required:
                report.problems.append(
                    f"{where}: unsigned, but {entry['incident']} requires signed entries "
                    "(written without the key, or its signature stripped)"
                )
            elif first_signed is not None:
                report.problems.append(
                    f"{where}: unsigned after signed entry {first_signed}: written without the "
                    "key, or rewritten (a consistent rewrite of the ledger)"
                )
            else:
                unsigned_before.append(seq)
            continue
        if first_signed is None:
            first_signed = seq
        report.signed += 1
        problem = sig_problem(sig, entry)
        if problem is not None:
            report.problems.append(f"{where}: {problem}")
            continue
        signer, key, problem = verify_signature(
            sig["signature"],
            message(entry["incident"], seq, entry["hash"]),
            allowed_signers,
            principals,
        )
        report.signers.append({"seq": seq, "signer": signer, "key": key})
        if key:
            keys.add(key)
        if problem is not None:
            report.problems.append(f"{where}: {problem}")
    if unsigned_before and first_signed is not None:
        report.warnings.append(
            f"ledger entries {_span(unsigned_before)} are unsigned (written before signing was "
            "set up): only the chain protects them"
        )
    if not report.signed and listed:
        text = (
            "ledger entries are not signed (no signing key was configured): a consistent "
            "rewrite of this workspace cannot be detected without --expect-head"
        )
        if allowed_signers is not None:
            report.problems.append(f"{text}; --allowed-signers has nothing to check")
        else:
            report.warnings.append(text)
    elif report.signed and allowed_signers is None:
        report.warnings.append(
            f"signatures are intact but not checked against an allowed_signers list "
            f"(key {', '.join(sorted(keys)) or 'unknown'}): give --allowed-signers FILE to "
            "check who signed"
        )
    return report


def _span(seqs: list[int]) -> str:
    return f"{seqs[0]}–{seqs[-1]}" if len(seqs) > 1 else str(seqs[0])
