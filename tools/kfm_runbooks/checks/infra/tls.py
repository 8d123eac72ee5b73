"""Certificate expiry of TLS endpoints, read over a real handshake.

The target's `tls` section lists endpoints (`url`, `hostname`, `ca_file`, `min_days`, and
optionally the installed `cert_file` / `key_file` and how to `renew`). `fetch` opens a TLS
connection (Python's ssl module) to an endpoint and reads the certificate the server
actually presents; `verify_chain` makes a second handshake that validates it against the
configured CA bundle. `evaluate` judges days to expiry against the threshold, the hostname
against the subject alternative names, the chain, and — when the target names the
installed files — whether the served certificate is the installed one (a renewal the
server has not picked up is not a renewal). Remote endpoints only when `remote.allow`
lists them; every handshake is noted in the evidence (through `Service`).

Renewal (through the apply gate only) acts through what the target names:
`renew.command` (run as is, e.g. `certbot renew --cert-name kfm` then a reload), or
`renew.issuer_cert` / `issuer_key` / `archive` (an internal CA on this host: `renew`
issues a new certificate with openssl, proves it loads with its key, covers the hostname
and chains to the CA, archives the installed pair and installs the new one, then waits
until the endpoint serves it). `reinstall` (the undo) puts an archived pair back. With
neither, the runbook records a manual action with the exact instruction.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ...errors import TargetError
from ...target import Target
from .. import HOLD, Finding, undoable
from ..common.files import FileProblem, read_bounded, read_regular
from .config import InfraConfig, argv, run_command
from .pki import MAX_PEM_BYTES, read_pem

EXPIRING = "INFRA_TLS_CERT_EXPIRING"
EXPIRED = "INFRA_TLS_CERT_EXPIRED"
NOT_YET_VALID = "INFRA_TLS_CERT_NOT_YET_VALID"
HOSTNAME = "INFRA_TLS_HOSTNAME_MISMATCH"
CHAIN = "INFRA_TLS_CHAIN_UNTRUSTED"
STALE_SERVED = "INFRA_TLS_SERVED_NOT_INSTALLED"
UNREACHABLE = "INFRA_TLS_UNREACHABLE"
KEY_MISMATCH = "INFRA_TLS_KEY_MISMATCH"
INSTALLED_REFUSED = "INFRA_TLS_INSTALLED_REFUSED"
EXPIRY_CODES = frozenset({EXPIRING, EXPIRED, NOT_YET_VALID})


@dataclass(frozen=True)
class TLSConfig:
    """One endpoint of the target's `tls` list."""

    infra: InfraConfig
    index: int
    url: str
    hostname: str
    ca_file: Path | None
    cert_file: Path | None
    key_file: Path | None
    min_days: float
    renew_command: list[str] | None
    issuer_cert: Path | None
    issuer_key: Path | None
    archive: Path | None
    renew_days: int

    @classmethod
    def all(cls, target: Target) -> list[TLSConfig]:
        infra = InfraConfig.from_target(target)
        return [cls.of(infra, i, e) for i, e in enumerate(infra.entries("tls"))]

    @classmethod
    def from_target(cls, target: Target, index: int = 0) -> TLSConfig:
        found = cls.all(target)
        if not found:
            raise TargetError(
                f"target {target.path} lists no TLS endpoint: add tls: [{{url: https://…, "
                "hostname: …, ca_file: …, min_days: 14}]"
            )
        return found[index]

    @classmethod
    def of(cls, infra: InfraConfig, index: int, entry: dict[str, Any]) -> TLSConfig:
        where = f"tls[{index}]"
        url = entry.get("url")
        parts = urllib.parse.urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme != "https" or not parts.hostname:
            raise TargetError(
                f"target {infra.target.path}: '{where}.url' = {url!r} must be an https URL "
                "(https://host:port)"
            )
        renew = entry.get("renew") or {}
        if not isinstance(renew, dict):
            raise TargetError(f"target {infra.target.path}: '{where}.renew' must be a mapping")
        return cls(
            infra=infra,
            index=index,
            url=str(url),
            hostname=str(entry.get("hostname") or parts.hostname),
            ca_file=infra.optional_path(entry, "ca_file", where),
            cert_file=infra.optional_path(entry, "cert_file", where),
            key_file=infra.optional_path(entry, "key_file", where),
            min_days=float(entry.get("min_days", 14)),
            renew_command=argv(renew.get("command"), f"{where}.renew.command", infra.target),
            issuer_cert=infra.optional_path(renew, "issuer_cert", f"{where}.renew"),
            issuer_key=infra.optional_path(renew, "issuer_key", f"{where}.renew"),
            archive=infra.optional_path(renew, "archive", f"{where}.renew"),
            renew_days=int(renew.get("days", 90)),
        )

    @property
    def label(self) -> str:
        """How findings and checks name the endpoint: its place in the list and its name
        (stable across runs; the URL, port included, is in the evidence)."""
        return f"tls[{self.index}] {self.hostname}"

    @property
    def renewal(self) -> str:
        """How this endpoint is renewed: "command", "issuer" or "manual"."""
        if self.renew_command is not None:
            return "command"
        if self.issuer_cert is not None and self.issuer_key is not None:
            return "issuer"
        return "manual"

    def endpoint(self) -> tuple[str, int]:
        """(host, port); TargetError when the host is remote and not in remote.allow."""
        self.infra.service.allowed(self.url)
        parts = urllib.parse.urlsplit(self.url)
        return str(parts.hostname), parts.port or 443

    def note(self, **detail: Any) -> None:
        self.infra.service.note_connection("tls", self.url, **detail)


@dataclass(frozen=True)
class Served:
    """The certificate an endpoint presented in a handshake."""

    sha256: str
    subject: str
    issuer: str
    serial: str
    not_before: datetime
    not_after: datetime
    san: tuple[tuple[str, str], ...]
    protocol: str

    def days_left(self, now: datetime) -> float:
        return (self.not_after - now).total_seconds() / 86400

    def as_dict(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "subject": self.subject,
            "issuer": self.issuer,
            "serial": self.serial,
            "not_before": self.not_before.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "not_after": self.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "san": [f"{kind}:{value}" for kind, value in self.san],
            "protocol": self.protocol,
        }


def _name(parts: Any) -> str:
    return ", ".join(f"{k}={v}" for rdn in parts for k, v in rdn)


def _time(value: str) -> datetime:
    return datetime.fromtimestamp(ssl.cert_time_to_seconds(value), UTC)


def decode_der(der: bytes, protocol: str = "") -> Served:
    """Decode a DER certificate with the ssl module's own decoder."""
    decoder = getattr(getattr(ssl, "_ssl", None), "_test_decode_cert", None)
    if decoder is None:  # pragma: no cover - present in every CPython 3
        raise TargetError("this Python's ssl module cannot decode certificates")
    with tempfile.NamedTemporaryFile("w", suffix=".pem") as pem:
        pem.write(ssl.DER_cert_to_PEM_cert(der))
        pem.flush()
        info = decoder(pem.name)
    return Served(
        sha256=hashlib.sha256(der).hexdigest(),
        subject=_name(info.get("subject", ())),
        issuer=_name(info.get("issuer", ())),
        serial=str(info.get("serialNumber", "")),
        not_before=_time(info["notBefore"]),
        not_after=_time(info["notAfter"]),
        san=tuple((str(k), str(v)) for k, v in info.get("subjectAltName", ())),
        protocol=protocol,
    )


def fetch(host: str, port: int, server_hostname: str, timeout: float = 10) -> Served:
    """Handshake without judging (CERT_NONE) and read the presented certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=server_hostname) as conn,
    ):
        der = conn.getpeercert(binary_form=True)
        protocol = conn.version() or ""
    if not der:
        raise ssl.SSLError("the server presented no certificate")
    return decode_der(der, protocol)


def verify_chain(
    host: str, port: int, server_hostname: str, ca_file: Path, timeout: float = 10
) -> str | None:
    """A validating handshake against ca_file (chain and validity dates; the hostname is
    judged separately). None when it validates, else the verifier's reason."""
    context = ssl.create_default_context(cafile=str(ca_file))
    context.check_hostname = False
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=server_hostname),
        ):
            return None
    except ssl.SSLCertVerificationError as exc:
        return str(exc.verify_message or exc.reason or "certificate verify failed")


def hostname_matches(served: Served, hostname: str) -> bool:
    """RFC 6125 style: exact DNS name, a left-most wildcard label, or an IP address."""
    host = hostname.lower().rstrip(".")
    for kind, value in served.san:
        value = value.lower().rstrip(".")
        if kind == "DNS" and (
            value == host
            or (value.startswith("*.") and "." in host and host.split(".", 1)[1] == value[2:])
        ):
            return True
        if kind == "IP Address" and value == host:
            return True
    return False


def installed_fingerprint(config: TLSConfig) -> str | None:
    """sha256 of the installed certificate; None when absent, unreadable or refused."""
    if config.cert_file is None:
        return None
    try:  # a link swapped in, a FIFO or an oversized file: refused unread
        pem = read_regular(config.cert_file, MAX_PEM_BYTES).decode("utf-8")
        der = ssl.PEM_cert_to_DER_cert(pem)
    except (ValueError, OSError):
        return None
    return hashlib.sha256(der).hexdigest()


def key_matches(cert: Path, key: Path) -> bool:
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError):
        return False
    return True


def days_phrase(days: float) -> str:
    whole = max(0, math.ceil(days))
    return f"{whole} day" + ("" if whole == 1 else "s")


def evaluate(
    config: TLSConfig,
    served: Served,
    chain_error: str | None,
    now: datetime,
) -> list[Finding]:
    """Findings about a served certificate (deterministic messages)."""
    subject = f"{config.label} (served certificate)"
    findings = []
    days = served.days_left(now)
    if now < served.not_before:
        findings.append(Finding(NOT_YET_VALID, subject, message="not valid yet (notBefore)"))
    if days <= 0:
        findings.append(Finding(EXPIRED, subject, message="the certificate has expired"))
    elif days < config.min_days:
        findings.append(
            Finding(
                EXPIRING,
                subject,
                field="/notAfter",
                message=f"expires in {days_phrase(days)}, within the {config.min_days:g}-day "
                "renewal threshold",
            )
        )
    if not hostname_matches(served, config.hostname):
        findings.append(
            Finding(
                HOSTNAME,
                subject,
                field="/subjectAltName",
                message=f"{config.hostname} is not among the subject alternative names",
            )
        )
    if chain_error is not None and days > 0 and now >= served.not_before:
        findings.append(
            Finding(
                CHAIN,
                subject,
                message=f"does not validate against the CA bundle: {chain_error}",
            )
        )
    elif config.ca_file is None:
        findings.append(
            Finding(CHAIN, subject, severity=HOLD, message="no CA bundle configured: chain unknown")
        )
    installed = installed_fingerprint(config)
    refused = None if config.cert_file is None else read_bounded(config.cert_file, MAX_PEM_BYTES)[1]
    if refused in (FileProblem.LINK, FileProblem.NOT_REGULAR, FileProblem.TOO_LARGE):
        findings.append(
            Finding(
                INSTALLED_REFUSED,
                subject,
                severity=HOLD,
                message=f"the installed certificate is refused unread ({refused}): "
                "cannot compare it with the served one",
            )
        )
    if installed is not None and installed != served.sha256:
        findings.append(
            Finding(
                STALE_SERVED,
                subject,
                message="the endpoint serves a different certificate than the one installed",
            )
        )
    if (
        config.cert_file is not None
        and config.key_file is not None
        and refused is None
        and not key_matches(config.cert_file, config.key_file)
    ):
        findings.append(
            Finding(KEY_MISMATCH, config.infra.rel(config.key_file), message="key does not match")
        )
    return findings


@dataclass
class Probe:
    """One look at the endpoint: what it served, the chain verdict, findings."""

    endpoint: str
    served: Served | None
    chain_error: str | None
    findings: list[Finding]


def probe(config: TLSConfig, now: datetime | None = None) -> Probe:
    """Handshake with the endpoint (twice when a CA bundle is named) and judge it; every
    handshake is noted as a connection. Unreachable: no verdict about the certificate."""
    now = datetime.now(UTC) if now is None else now
    try:
        host, port = config.endpoint()
    except TargetError as exc:  # refused before any connection: nothing judged, never PASS
        finding = Finding(UNREACHABLE, config.label, severity=HOLD, message=str(exc))
        return Probe("", None, None, [finding])
    label = f"{host}:{port}"
    started = time.monotonic()
    try:
        served = fetch(host, port, config.hostname)
    except (OSError, ssl.SSLError) as exc:
        config.note(error=type(exc).__name__, seconds=round(time.monotonic() - started, 3))
        message = f"no TLS handshake with {label} ({type(exc).__name__})"
        return Probe(label, None, None, [Finding(UNREACHABLE, config.label, message=message)])
    config.note(status="handshake", seconds=round(time.monotonic() - started, 3))
    chain = None
    if config.ca_file is not None:
        chain = verify_chain(host, port, config.hostname, config.ca_file)
        config.note(status="verified" if chain is None else "verify failed", purpose="chain")
    return Probe(label, served, chain, evaluate(config, served, chain, now))


def probe_all(configs: list[TLSConfig], now: datetime | None = None) -> list[Probe]:
    return [probe(c, now) for c in configs]


# --- verification ------------------------------------------------------------------------

ASPECTS = {
    "tls-expiry": (EXPIRY_CODES, "more than {min_days} days of validity left"),
    "tls-hostname": (frozenset({HOSTNAME}), "the hostname is among the subject alternative names"),
    "tls-chain": (frozenset({CHAIN}), "validates against the CA bundle"),
    "tls-served-is-installed": (
        frozenset({STALE_SERVED, KEY_MISMATCH, INSTALLED_REFUSED}),
        "serves the installed certificate, whose key matches",
    ),
}


@dataclass(frozen=True)
class VerificationCheck:
    name: str
    status: str
    detail: str
    examined: int
    in_scope: int
    unit: str = "TLS endpoints"


def verification_checks(configs: list[TLSConfig], probes: list[Probe]) -> list[VerificationCheck]:
    """One check per aspect over every endpoint: FAIL when one fails, HOLD when one could not
    be judged (unreachable, no CA bundle), PASS only when every endpoint in scope passed.
    `tls-served-is-installed` covers the endpoints that name their installed cert_file."""
    if not configs:
        return [
            VerificationCheck(
                "tls-endpoints", "HOLD", "the target lists no TLS endpoint (tls: [...])", 0, 1
            )
        ]
    out = []
    for name, (codes, good) in ASPECTS.items():
        pairs = list(zip(configs, probes, strict=True))
        if name == "tls-served-is-installed":
            pairs = [(c, p) for c, p in pairs if c.cert_file is not None]
            if not pairs:
                continue
        failed, held, examined = [], [], 0
        for config, result in pairs:
            if result.served is None:
                held.append(f"{config.label}: no certificate read ({result.findings[0].message})")
                continue
            mine = [f for f in result.findings if f.code in codes]
            blocking = [f for f in mine if f.severity != HOLD]
            if blocking:
                failed += [f"{config.label}: {f.message}" for f in blocking]
                examined += 1
            elif mine:
                held += [f"{config.label}: {f.message}" for f in mine]
            else:
                examined += 1
        status = "FAIL" if failed else "HOLD" if held else "PASS"
        detail = "; ".join(failed + held) or good.format(
            min_days=", ".join(sorted({f"{c.min_days:g}" for c, _ in pairs}))
        )
        out.append(VerificationCheck(name, status, detail, examined, len(pairs)))
    return out


def issuer_usable(config: TLSConfig) -> bool:
    """The issuer's files exist and the issuer outlives a renewed certificate."""
    if config.issuer_cert is None or config.issuer_key is None:
        return False
    if not config.issuer_cert.is_file() or not config.issuer_key.is_file():
        return False
    try:
        issuer = decode_der(ssl.PEM_cert_to_DER_cert(read_pem(config.issuer_cert)))
    except (ValueError, OSError):
        return False
    return issuer.days_left(datetime.now(UTC)) > config.renew_days


# --- renewal (through the apply gate) and its undo -----------------------------------------


def _require(path: Path | None, what: str) -> Path:
    if path is None:
        raise TargetError(f"the endpoint names no {what}: cannot renew from files")
    return path


def _verify_file(cert: Path, ca: Path) -> None:
    from .pki import openssl

    result = subprocess.run(
        [openssl(), "verify", "-CAfile", str(ca), str(cert)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        raise TargetError(f"the new certificate does not chain to the CA: {result.stdout.strip()}")


def wait_served(config: TLSConfig, fingerprint: str, timeout: float = 10) -> bool:
    host, port = config.endpoint()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if fetch(host, port, config.hostname).sha256 == fingerprint:
                config.note(status="serves the new certificate", purpose="renewal check")
                return True
        except (OSError, ssl.SSLError):
            pass
        time.sleep(0.2)
    config.note(status="old certificate still served", purpose="renewal check")
    return False


def renew_by_command(config: TLSConfig, before: str | None) -> dict[str, Any]:
    """Run the target's renewal command, then handshake: the endpoint must serve another
    certificate than `before` (the fingerprint served when the step started)."""
    if config.renew_command is None:
        raise TargetError(f"tls[{config.index}].renew.command is not set")
    result = run_command(config.infra, config.renew_command, "the renewal command")
    after = probe(config)
    served = after.served.sha256 if after.served is not None else None
    if served is None or served == before:
        raise RuntimeError(
            f"the renewal command exited 0 but {config.label} still serves the "
            "previous certificate: the server did not reload it (reload it, then re-run)"
        )
    return {
        "command": result["command"],
        "exit": result["exit"],
        "fingerprint": served,
        "not_after": after.served.as_dict()["not_after"] if after.served else None,
        "served": True,
    }


def manual_instruction(config: TLSConfig) -> str:
    return (
        f"Renew the certificate served at {config.url} for {config.hostname} (at least "
        f"{config.min_days:g} days of validity, SAN {config.hostname}"
        + (f", chaining to {config.infra.rel(config.ca_file)}" if config.ca_file else "")
        + "), install it where the server reads it"
        + (f" ({config.infra.rel(config.cert_file)})" if config.cert_file else "")
        + ", reload the server, then re-run RBK-infra-cert-expiry to verify that the endpoint "
        "serves it. To let the runbook do this, name tls[].renew.command (e.g. [certbot, "
        "renew, --cert-name, NAME]) or the issuer files in the target."
    )


def _install(source_cert: Path, source_key: Path, cert: Path, key: Path) -> None:
    """Key first, then certificate, each by atomic rename: until both are in place the
    pair does not load and the listener keeps the previous one."""
    for src, dest, mode in ((source_key, key, 0o600), (source_cert, cert, 0o644)):
        tmp = dest.with_name(f".{dest.name}.install")
        shutil.copyfile(src, tmp)
        tmp.chmod(mode)
        tmp.replace(dest)


def renew(config: TLSConfig) -> dict[str, Any]:
    """Issue, check, archive the installed pair, install, and wait until it is served."""
    from .pki import fingerprint, issue

    cert, key = _require(config.cert_file, "cert_file"), _require(config.key_file, "key_file")
    archive_root = _require(config.archive, "archive")
    ca = _require(config.ca_file, "ca_file")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    with tempfile.TemporaryDirectory(prefix=".renew-", dir=cert.parent) as tmp:
        new_cert, new_key = issue(
            _require(config.issuer_cert, "issuer_cert"),
            _require(config.issuer_key, "issuer_key"),
            Path(tmp),
            hostname=config.hostname,
            days=config.renew_days,
        )
        _verify_file(new_cert, ca)
        if not key_matches(new_cert, new_key):
            raise TargetError("the issued certificate does not load with its key")
        checked = decode_der(ssl.PEM_cert_to_DER_cert(read_pem(new_cert)))
        if not hostname_matches(checked, config.hostname):
            raise TargetError(f"the issued certificate does not cover {config.hostname}")
        archived = archive_root / f"{stamp}-{fingerprint(cert)[:12]}" if cert.is_file() else None
        if archived is not None:
            archived.mkdir(parents=True, exist_ok=True)
            shutil.copy2(cert, archived / "server.crt")
            shutil.copy2(key, archived / "server.key")
            (archived / "server.key").chmod(0o600)
        new_fp = fingerprint(new_cert)
        _install(new_cert, new_key, cert, key)
    served = wait_served(config, new_fp)
    return {
        "archive": None if archived is None else archived.name,
        "fingerprint": new_fp,
        "not_after": checked.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "served": served,
    }


def reinstall(config: TLSConfig, archive: str | None) -> dict[str, Any]:
    """Undo `renew`: install the archived pair again (idempotent)."""
    from .pki import fingerprint

    if not archive or "/" in archive or archive.startswith("."):
        raise TargetError(f"{archive!r} is not a certificate archive name")
    cert, key = _require(config.cert_file, "cert_file"), _require(config.key_file, "key_file")
    folder = _require(config.archive, "archive") / archive
    if not (folder / "server.crt").is_file():
        raise TargetError(f"no archived certificate {archive}")
    old = fingerprint(folder / "server.crt")
    if cert.is_file() and fingerprint(cert) == old:
        return {"reinstalled": False, "fingerprint": old, "note": "already installed"}
    _install(folder / "server.crt", folder / "server.key", cert, key)
    return {"reinstalled": True, "fingerprint": old, "served": wait_served(config, old)}


@undoable("infra.reinstall_certificate")
def _undo_reinstall_certificate(target: Target, archive: str, endpoint: int = 0) -> dict[str, Any]:
    """Reinstall an archived certificate and key (the one a renewal replaced) of the
    target's tls[endpoint]."""
    return reinstall(TLSConfig.from_target(target, endpoint), archive)
