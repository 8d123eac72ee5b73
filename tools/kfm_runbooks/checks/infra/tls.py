"""Certificate expiry of a TLS endpoint, read over a real handshake.

`fetch` opens a TLS connection (Python's ssl module) to the endpoint the target names —
the sandbox API's HTTPS port from services.json, or `infra.tls.url` — and reads the
certificate the server actually presents; `verify_chain` makes a second handshake that
validates it against the configured CA bundle. `evaluate` judges days to expiry against
the threshold, the hostname against the subject alternative names, the chain, and whether
the served certificate is the one installed on disk (a renewal the server has not picked up
is not a renewal). Loopback only unless the target allows remote endpoints.

`renew` (through the apply gate only) issues a new certificate from the configured issuer
(openssl, see pki.py), proves it loads with its key, covers the hostname and chains
to the CA, archives the installed pair and installs the new one, then waits until the
endpoint serves it — no restart. `reinstall` (the undo) puts an archived pair back.
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
from .config import LOOPBACK, InfraConfig
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
    infra: InfraConfig
    hostname: str
    ca_file: Path | None
    issuer_cert: Path | None
    issuer_key: Path | None
    cert_file: Path | None
    key_file: Path | None
    archive: Path | None
    min_days: float
    renew_days: int

    @classmethod
    def from_target(cls, target: Target) -> TLSConfig:
        infra = InfraConfig.from_target(target)
        part = infra.part("tls")

        def opt(key: str) -> Path | None:
            value = part.get(key)
            return None if value is None else infra.path(value, f"infra.tls.{key}")

        return cls(
            infra=infra,
            hostname=str(part.get("hostname", "localhost")),
            ca_file=opt("ca_file"),
            issuer_cert=opt("issuer_cert"),
            issuer_key=opt("issuer_key"),
            cert_file=opt("cert_file"),
            key_file=opt("key_file"),
            archive=opt("archive"),
            min_days=float(part.get("min_days", 14)),
            renew_days=int(part.get("renew_days", 90)),
        )

    def endpoint(self) -> tuple[str, int] | str:
        """(host, port) of the endpoint, or why it is unknown."""
        part = self.infra.part("tls")
        url = part.get("url")
        if url is None and part.get("service"):
            services = self.infra.services()
            if services is None:
                return "the live services are not running (no services file)"
            url = (services.get(str(part["service"])) or {}).get("url")
            if not url:
                return f"service {part['service']!r} has no TLS URL in the services file"
        if not isinstance(url, str):
            return "no TLS endpoint configured (infra.tls.url or infra.tls.service)"
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            return f"{url!r} is not an https URL"
        if parts.hostname not in LOOPBACK and not self.infra.allow_remote:
            raise TargetError(f"refusing to connect to {parts.hostname}: loopback only")
        return parts.hostname, parts.port or 443


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
    subject = f"{config.hostname} (served certificate)"
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
    now = datetime.now(UTC) if now is None else now
    where = config.endpoint()
    if isinstance(where, str):
        finding = Finding(UNREACHABLE, config.hostname, severity=HOLD, message=where)
        return Probe("", None, None, [finding])
    host, port = where
    label = f"{host}:{port}"
    try:
        served = fetch(host, port, config.hostname)
    except (OSError, ssl.SSLError) as exc:
        message = f"no TLS handshake with the endpoint ({type(exc).__name__})"
        return Probe(label, None, None, [Finding(UNREACHABLE, config.hostname, message=message)])
    chain = (
        verify_chain(host, port, config.hostname, config.ca_file)
        if config.ca_file is not None
        else None
    )
    return Probe(label, served, chain, evaluate(config, served, chain, now))


# --- renewal (through the apply gate) and its undo -----------------------------------------


def _require(path: Path | None, what: str) -> Path:
    if path is None:
        raise TargetError(f"infra.tls.{what} is not configured: cannot renew")
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
    where = config.endpoint()
    if isinstance(where, str):
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if fetch(*where, config.hostname).sha256 == fingerprint:
                return True
        except (OSError, ssl.SSLError):
            pass
        time.sleep(0.2)
    return False


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
def _undo_reinstall_certificate(target: Target, archive: str) -> dict[str, Any]:
    """Reinstall an archived certificate and key (the one a renewal replaced)."""
    return reinstall(TLSConfig.from_target(target), archive)
