"""Supply chain: installed distributions against the lock and against pip's own RECORD.

A Python environment is trusted when every installed distribution is pinned by the lock
at the version installed, and every file each distribution installed still has the
sha256 pip wrote into its `.dist-info/RECORD` at install time. Codes:

- `SEC_PKG_VERSION_DRIFT`  installed version differs from the lock's pin
- `SEC_PKG_UNPINNED`       installed, not in the lock (`SEC_PKG_UNPINNED_ALLOWED`: on the
                           target's allow list, e.g. pip/setuptools from `python -m venv`)
- `SEC_PKG_FILE_TAMPERED`  a file's sha256 differs from its RECORD line
- `SEC_PKG_FILE_MISSING`, `SEC_PKG_RECORD_MISSING`, `SEC_PKG_METADATA_MISSING`,
  `SEC_PKG_RECORD_INVALID`, `SEC_PKG_RECORD_WEAK_HASH`, `SEC_PKG_DUPLICATE`
- `SEC_PKG_RECORD_PATH_ESCAPE` a RECORD path outside the environment: never opened
- `SEC_PKG_UNOWNED_PTH`    a `.pth` start-up hook no distribution installed

Containment marks the environment untrusted with a flag file that promotion gates read
(reversible). Recovery is the documented reinstall (`pip install --require-hashes ...`);
`security_wheels` reinstalls from a local wheelhouse whose wheels match the lock's hashes.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..._fs import create_new, open_regular
from ..._time import now_iso
from ...target import Target
from ...vocab import Verdict
from .. import BLOCKING, HOLD, INFO, Finding, undoable
from ..common.findings import FindingsReport
from .base import inside, read_bytes, read_json, rel

MAX_DIST_FILE_BYTES = 64 << 20  # a dist-info METADATA / RECORD file

INTEGRITY_CODES = frozenset(
    {
        "SEC_PKG_FILE_TAMPERED",
        "SEC_PKG_FILE_MISSING",
        "SEC_PKG_RECORD_MISSING",
        "SEC_PKG_METADATA_MISSING",
        "SEC_PKG_RECORD_INVALID",
        "SEC_PKG_RECORD_WEAK_HASH",
        "SEC_PKG_RECORD_PATH_ESCAPE",
        "SEC_PKG_UNOWNED_PTH",
    }
)
LOCK_CODES = frozenset({"SEC_PKG_VERSION_DRIFT", "SEC_PKG_UNPINNED", "SEC_PKG_DUPLICATE"})
STRONG_HASHES = frozenset({"sha256", "sha384", "sha512"})
_NAME_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([^\s;#]+)")
_HASH_RE = re.compile(r"--hash[= ](sha256|sha384|sha512):([0-9a-f]+)")
_SITE_RE = re.compile(r"^python\d+(\.\d+)?$")


def normalize(name: str) -> str:
    """PEP 503 name normalization: `Foo_Bar.baz` -> `foo-bar-baz`."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Pin:
    name: str  # normalized
    version: str
    hashes: tuple[str, ...]  # "sha256:<hex>"
    line: int


@dataclass(frozen=True)
class EnvConfig:
    """The environment and its lock, from the target's `security_environment` section."""

    site_packages: Path
    root: Path  # RECORD paths may reach up to here (bin/, share/) and no further
    lock: Path
    allow_unpinned: frozenset[str]
    flag: Path
    wheelhouse: Path | None
    backup: Path

    @classmethod
    def from_target(cls, target: Target) -> EnvConfig:
        section = target.section("security_environment")
        site = target.resolve("security_environment", "site_packages")
        lock = target.resolve("security_environment", "lock")
        assert site is not None and lock is not None
        root = target.resolve("security_environment", "root", required=False)
        if root is None:
            parents = site.parents
            looks_like_venv = (
                site.name == "site-packages"
                and len(parents) > 2
                and _SITE_RE.match(parents[0].name)
                and parents[1].name in ("lib", "lib64")
            )
            root = parents[2] if looks_like_venv else site
        flag = target.resolve("security_environment", "untrusted_flag", required=False)
        backup = target.resolve("security_environment", "backup", required=False)
        allow = section.get("allow_unpinned") or []
        return cls(
            site_packages=site,
            root=root,
            lock=lock,
            allow_unpinned=frozenset(normalize(str(a)) for a in allow),
            flag=flag or target.base / "KFM_ENV_UNTRUSTED.json",
            wheelhouse=target.resolve("security_environment", "wheelhouse", required=False),
            backup=backup or target.base / ".kfm-env-backup",
        )


# --- the lock ---------------------------------------------------------------------------


def _logical_lines(text: str) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(" #", 1)[0] if not raw.lstrip().startswith("#") else ""
        if not buffer:
            start = number
        if line.rstrip().endswith("\\"):
            buffer += line.rstrip()[:-1] + " "
            continue
        buffer += line
        if buffer.strip():
            out.append((start, buffer.strip()))
        buffer = ""
    if buffer.strip():
        out.append((start, buffer.strip()))
    return out


def parse_lock(path: Path) -> tuple[dict[str, Pin], list[Finding]]:
    """`name==version [--hash=sha256:...]` lines; anything else is reported, not guessed."""
    subject = path.name
    data, code = read_bytes(path)  # a link, FIFO or oversized lock: refused, not followed
    if code == "SEC_FILE_NOT_FOUND":
        return {}, [Finding("SEC_LOCK_MISSING", subject, "/", HOLD, "lock file not found")]
    try:
        text = data.decode("utf-8") if data is not None else None
    except UnicodeDecodeError:
        text = None
    if text is None:
        why = f"lock not readable ({code})" if code else "lock not readable"
        return {}, [Finding("SEC_LOCK_UNREADABLE", subject, "/", HOLD, why)]
    pins: dict[str, Pin] = {}
    findings: list[Finding] = []
    for number, line in _logical_lines(text):
        if line.startswith("-"):
            findings.append(
                Finding("SEC_LOCK_OPTION_IGNORED", subject, f":{number}", INFO, line[:60])
            )
            continue
        match = _NAME_RE.match(line)
        if not match:
            findings.append(
                Finding(
                    "SEC_LOCK_NOT_PINNED",
                    subject,
                    f":{number}",
                    BLOCKING,
                    "not an exact `name==version` pin",
                )
            )
            continue
        key = normalize(match.group(1))
        hashes = tuple(f"{a}:{h}" for a, h in _HASH_RE.findall(line))
        if key in pins:
            findings.append(
                Finding("SEC_LOCK_DUPLICATE", subject, f":{number}", BLOCKING, f"{key} twice")
            )
            continue
        pins[key] = Pin(key, match.group(3), hashes, number)
    return pins, findings


# --- installed distributions ------------------------------------------------------------


@dataclass
class DistReport(FindingsReport):
    """One installed distribution (one `.dist-info` folder)."""

    dist_info: str
    name: str
    version: str
    pinned: str | None = None
    files_recorded: int = 0
    files_verified: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def key(self) -> str:
        return normalize(self.name)

    @property
    def state(self) -> str:
        codes = set(self.all_codes)  # SEC_PKG_UNPINNED_ALLOWED is an info finding
        if codes & INTEGRITY_CODES:
            return "integrity"
        if "SEC_PKG_VERSION_DRIFT" in codes:
            return "drift"
        if codes & {"SEC_PKG_UNPINNED", "SEC_PKG_DUPLICATE"}:
            return "unpinned"
        if "SEC_PKG_UNPINNED_ALLOWED" in codes:
            return "allowed"
        return "ok"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "pinned": self.pinned,
            "state": self.state,
            "outcome": self.outcome,
            "files_recorded": self.files_recorded,
            "files_verified": self.files_verified,
            "codes": self.codes,
        }


def _metadata(dist_info: Path) -> tuple[str, str] | None:
    data, _ = read_bytes(dist_info / "METADATA", MAX_DIST_FILE_BYTES)
    if data is None:  # missing, a link (never followed), not regular, too large
        return None
    text = data.decode("utf-8", errors="replace")
    header = text.split("\n\n", 1)[0]
    name = re.search(r"^Name:\s*(\S.*?)\s*$", header, re.M)
    version = re.search(r"^Version:\s*(\S.*?)\s*$", header, re.M)
    if not name or not version:
        return None
    return name.group(1), version.group(1)


def _digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with os.fdopen(open_regular(path), "rb") as stream:  # a link swapped in: OSError
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def record_rows(dist_info: Path) -> list[list[str]] | None:
    data, _ = read_bytes(dist_info / "RECORD", MAX_DIST_FILE_BYTES)
    try:
        text = data.decode("utf-8") if data is not None else None
    except UnicodeDecodeError:
        text = None
    if text is None:  # missing, a link (never followed), not regular, too large, not UTF-8
        return None
    return [row for row in csv.reader(text.splitlines()) if row]


def record_path(raw: str, config: EnvConfig) -> Path | None:
    """Where a RECORD path points, or None when it leaves the environment root."""
    if not raw or "\x00" in raw or raw.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", raw):
        return None
    candidate = os.path.normpath(f"{config.site_packages}{os.sep}{raw}")
    return Path(candidate) if inside(candidate, config.root) else None


class _RealDirs:
    """realpath of folders, cached: a symlinked folder must not lead out of the root."""

    def __init__(self, root: Path) -> None:
        self.root = os.path.realpath(root)
        self.cache: dict[str, bool] = {}

    def safe(self, path: Path) -> bool:
        folder = str(path.parent)
        if folder not in self.cache:
            self.cache[folder] = inside(os.path.realpath(folder), self.root)
        return self.cache[folder] and not path.is_symlink()


def verify_dist(dist_info: Path, config: EnvConfig, report: DistReport) -> set[str]:
    """Check every RECORD line of one distribution; returns the paths it owns."""
    subject = report.dist_info
    owned: set[str] = set()
    rows = record_rows(dist_info)
    if rows is None:
        report.findings.append(
            Finding(
                "SEC_PKG_RECORD_MISSING", subject, "/RECORD", BLOCKING, "no RECORD: unverifiable"
            )
        )
        return owned
    real = _RealDirs(config.root)
    for number, row in enumerate(rows, start=1):
        raw = row[0]
        hash_field = row[1] if len(row) > 1 else ""
        where = f"/RECORD:{number}"
        path = record_path(raw, config)
        if path is None:
            report.findings.append(
                Finding(
                    "SEC_PKG_RECORD_PATH_ESCAPE",
                    subject,
                    where,
                    BLOCKING,
                    f"{raw[:80]!r} leaves the environment: not opened",
                )
            )
            continue
        owned.add(os.path.normpath(raw))
        if not hash_field:
            continue  # RECORD itself, compiled .pyc: pip records no hash for them
        report.files_recorded += 1
        algorithm, _, expected = hash_field.partition("=")
        if algorithm not in STRONG_HASHES or not expected:
            code = "SEC_PKG_RECORD_WEAK_HASH" if expected else "SEC_PKG_RECORD_INVALID"
            report.findings.append(
                Finding(code, subject, where, BLOCKING, f"{raw}: hash {algorithm or '?'}")
            )
            continue
        if not real.safe(path):
            report.findings.append(
                Finding("SEC_PKG_FILE_SYMLINK", subject, where, HOLD, f"{raw}: symlink, not read")
            )
            continue
        try:
            actual = _digest(path, algorithm)
        except FileNotFoundError:
            report.findings.append(
                Finding("SEC_PKG_FILE_MISSING", subject, where, BLOCKING, f"{raw} is gone")
            )
            continue
        except OSError:
            report.findings.append(
                Finding("SEC_PKG_FILE_MISSING", subject, where, BLOCKING, f"{raw} unreadable")
            )
            continue
        if actual != expected:
            report.findings.append(
                Finding(
                    "SEC_PKG_FILE_TAMPERED",
                    subject,
                    where,
                    BLOCKING,
                    f"{raw}: {algorithm} {actual[:10]}… != RECORD {expected[:10]}…",
                )
            )
        else:
            report.files_verified += 1
    return owned


@dataclass
class EnvScan:
    dists: list[DistReport]
    pins: dict[str, Pin]
    lock_findings: list[Finding]
    env_findings: list[Finding]

    @property
    def findings(self) -> list[Finding]:
        out = list(self.lock_findings) + list(self.env_findings)
        for dist in self.dists:
            out.extend(dist.findings)
        return out

    def with_codes(self, codes: frozenset[str]) -> list[Finding]:
        return [f for f in self.findings if f.code in codes]

    @property
    def faulty(self) -> list[DistReport]:
        return [d for d in self.dists if d.outcome != Verdict.PASS]

    @property
    def clean(self) -> bool:
        return not [f for f in self.findings if f.severity in (BLOCKING, HOLD)]


def scan(config: EnvConfig) -> EnvScan:
    pins, lock_findings = parse_lock(config.lock)
    lock_unusable = any(
        f.code in ("SEC_LOCK_MISSING", "SEC_LOCK_UNREADABLE") for f in lock_findings
    )
    env_findings: list[Finding] = []
    site = config.site_packages
    if not site.is_dir() or site.is_symlink():
        env_findings.append(
            Finding("SEC_ENV_NOT_FOUND", site.name, "/", HOLD, "site-packages folder not found")
        )
        return EnvScan([], pins, lock_findings, env_findings)
    dists: list[DistReport] = []
    owned: set[str] = set()
    for dist_info in sorted(site.glob("*.dist-info")):
        subject = dist_info.name
        meta = _metadata(dist_info)
        if meta is None:
            stem = dist_info.name.removesuffix(".dist-info")
            name, _, version = stem.partition("-")
            report = DistReport(subject, name, version or "?")
            report.findings.append(
                Finding(
                    "SEC_PKG_METADATA_MISSING", subject, "/METADATA", BLOCKING, "no Name/Version"
                )
            )
        else:
            report = DistReport(subject, *meta)
        owned |= verify_dist(dist_info, config, report)
        pin = pins.get(report.key)
        report.pinned = pin.version if pin else None
        if lock_unusable:
            pass  # no lock to compare with: the lock finding (HOLD) says so once
        elif pin is None:
            allowed = report.key in config.allow_unpinned
            report.findings.append(
                Finding(
                    "SEC_PKG_UNPINNED_ALLOWED" if allowed else "SEC_PKG_UNPINNED",
                    subject,
                    "/METADATA",
                    INFO if allowed else BLOCKING,
                    f"{report.name} {report.version} is not in the lock"
                    + (" (allowed by the target)" if allowed else ""),
                )
            )
        elif pin.version != report.version:
            report.findings.append(
                Finding(
                    "SEC_PKG_VERSION_DRIFT",
                    subject,
                    "/METADATA",
                    BLOCKING,
                    f"{report.name} {report.version} installed, lock pins {pin.version}",
                )
            )
        dists.append(report)
    seen: dict[str, DistReport] = {}
    for report in dists:
        if report.key in seen:
            report.findings.append(
                Finding(
                    "SEC_PKG_DUPLICATE",
                    report.dist_info,
                    "/",
                    BLOCKING,
                    f"also installed as {seen[report.key].dist_info}",
                )
            )
        seen.setdefault(report.key, report)
    for pth in sorted(site.glob("*.pth")):
        if pth.name not in owned:
            env_findings.append(
                Finding(
                    "SEC_PKG_UNOWNED_PTH",
                    pth.name,
                    "/",
                    BLOCKING,
                    "start-up hook (.pth) that no installed distribution recorded",
                )
            )
    for key, pin in sorted(pins.items()):
        if key not in seen:
            env_findings.append(
                Finding(
                    "SEC_PKG_NOT_INSTALLED",
                    config.lock.name,
                    f":{pin.line}",
                    INFO,
                    f"{key}=={pin.version} pinned but not installed",
                )
            )
    for report in dists:
        report.findings.sort()
    return EnvScan(dists, pins, lock_findings, sorted(env_findings))


def reinstall_command(config: EnvConfig, names: list[str]) -> str:
    """The recovery command to run where the environment is built (lock changes: PR-first).

    With wheel hashes in the lock: reinstall every pin in hash-checking mode. Without:
    reinstall the named packages at the lock's versions (add hashes to the lock, by PR).
    """
    lock = rel(config.lock, config.root.parent)
    pins, _ = parse_lock(config.lock)
    wanted = [pins[normalize(n)] for n in names if normalize(n) in pins]
    if wanted and all(pin.hashes for pin in wanted):
        return f"python -m pip install --force-reinstall --no-deps --require-hashes -r {lock}"
    targets = " ".join(sorted(f"{p.name}=={p.version}" for p in wanted)) or "-r " + lock
    return f"python -m pip install --force-reinstall --no-deps -c {lock} {targets}"


# --- containment: the untrusted flag ----------------------------------------------------


def untrusted(config: EnvConfig) -> dict[str, Any] | None:
    if not os.path.lexists(config.flag):
        return None
    value, _ = read_json(config.flag)  # a link or oversized flag: refused, still blocks
    if not isinstance(value, dict):
        return {"untrusted": True, "reason": "unreadable flag (still blocks promotion)"}
    return value


def promotion_allowed(config: EnvConfig) -> bool:
    """What a promotion gate asks: no untrusted flag on this environment."""
    return untrusted(config) is None


def mark_untrusted(config: EnvConfig, *, incident: str, reasons: list[str]) -> dict[str, Any]:
    """Flag the environment untrusted (promotion gates refuse it). Idempotent."""
    existing = untrusted(config)
    if existing is not None:
        return {**existing, "already": True}
    flag = {
        "untrusted": True,
        "environment": rel(config.site_packages, config.root.parent),
        "incident": incident,
        "reasons": sorted(set(reasons)),
        "since": now_iso(),
        "lift": "kfm-runbook rollback <incident> <action id> --apply, after recovery and review",
    }
    config.flag.parent.mkdir(parents=True, exist_ok=True)
    create_new(config.flag, (json.dumps(flag, indent=2, sort_keys=True) + "\n").encode())
    return {**flag, "already": False}


def clear_untrusted(config: EnvConfig, incident: str) -> dict[str, Any]:
    """Undo `mark_untrusted`: lift the flag this incident set."""
    existing = untrusted(config)
    if existing is None:
        return {"cleared": False, "reason": "not flagged"}
    if existing.get("incident") != incident:
        return {"cleared": False, "reason": f"flag belongs to {existing.get('incident')}"}
    config.flag.unlink()
    return {"cleared": True}


@undoable("security_supply.clear_untrusted")
def _undo_clear_untrusted(target: Target, incident: str) -> dict[str, Any]:
    return clear_untrusted(EnvConfig.from_target(target), incident)
