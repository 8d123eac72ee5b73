"""Disk pressure: free space and inodes of the volumes a target names, measured for real.

`volumes(config, workspace)` resolves the target's `disk.volumes` (a path, the data
directory the database of the target's `postgres` section reports — `SHOW data_directory`,
measured when it lies on this host —, or a folder of the incident workspace);
`assess(spec)` measures one with os.statvfs and returns findings against its thresholds,
plus the files its `reclaimable` patterns match (rotated logs, temp files — never
anything a process holds open, never through a symlink, never outside the volume).
`consumers` and `growth` describe where the bytes are and when they were written.

`reclaim` (through the apply gate only) gzips reclaimable files into a quarantine on
another volume, proving each copy restores byte-identical before the original is
removed; `restore_batch` (the undo) puts them back. Both are idempotent.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import TargetError
from ...target import Target
from .. import BLOCKING, HOLD, INFO, Finding, undoable
from ..common import json as strict_json
from ..common.files import sha256_file
from ..common.findings import FindingsReport
from .config import InfraConfig

SPACE_LOW = "INFRA_DISK_SPACE_LOW"
INODES_LOW = "INFRA_DISK_INODES_LOW"
MISSING = "INFRA_VOLUME_MISSING"
UNAVAILABLE = "INFRA_VOLUME_UNAVAILABLE"
NOT_DEDICATED = "INFRA_VOLUME_NOT_DEDICATED"
RECLAIMABLE = "INFRA_DISK_RECLAIMABLE"
FILLING = "INFRA_DISK_FILLING"
UNSAFE_PATTERN = "INFRA_DISK_PATTERN_UNSAFE"
PRESSURE_CODES = frozenset({SPACE_LOW, INODES_LOW})
GROWTH_WINDOW_H = 6
FILLING_HORIZON_H = 24
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 64 << 20  # a reclaim batch manifest (one entry per file)


@dataclass(frozen=True)
class VolumeSpec:
    """One volume the target names, with its thresholds."""

    name: str
    path: Path | None
    problem: str = ""  # why the path is unknown (e.g. the database does not answer)
    dedicated: bool = False  # must be its own filesystem
    min_free_percent: float = 10.0
    min_free_inodes_percent: float = 10.0
    reclaimable: tuple[tuple[str, str], ...] = ()  # (kind, pattern), e.g. ("temp", "tmp/*")
    min_age_minutes: float = 30.0


def disk_section(config: InfraConfig) -> dict[str, Any]:
    disk = config.section("disk")
    if not disk:
        raise TargetError(
            f"target {config.target.path} has no 'disk' section, which this runbook needs: "
            "add disk: {volumes: [{name: data, path: /srv/data, min_free_percent: 15}]}"
        )
    return disk


def postgres_data_directory(config: InfraConfig) -> tuple[Path | None, str]:
    """The data directory the target's database reports, or why it is unknown."""
    try:
        with config.service.connect_pg(connect_timeout=10) as conn:
            row = conn.execute("SHOW data_directory").fetchone()
    except TargetError as exc:  # no DSN to reach it by (e.g. the secret file is absent)
        return None, str(exc)
    except Exception as exc:  # psycopg's errors: the database does not answer or refuses
        return None, f"the database (postgres section) does not answer: {type(exc).__name__}"
    if not row or not row[0]:
        return None, "the database does not report its data_directory"
    folder = Path(str(row[0]))
    if not folder.is_dir():
        return None, f"its data_directory {folder} is not on this host: measure it there"
    return folder, ""


def volumes(config: InfraConfig, workspace: Path | None = None) -> list[VolumeSpec]:
    disk = disk_section(config)
    raw = disk.get("volumes")
    if not isinstance(raw, list) or not raw:
        raise TargetError(f"target {config.target.path}: 'disk.volumes' must be a list")
    specs = []
    for entry in raw:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise TargetError(f"target {config.target.path}: each disk volume needs a 'name'")
        path: Path | None = None
        problem = ""
        if "path" in entry:
            path = config.path(entry["path"], f"disk.volumes[{entry['name']}].path")
        elif entry.get("postgres") == "data_directory":
            path, problem = postgres_data_directory(config)
        elif "workspace" in entry:
            if workspace is None:
                problem = "no incident workspace given"
            else:
                path = Path(workspace) / str(entry["workspace"])
        else:
            raise TargetError(
                f"volume {entry['name']}: give 'path', 'postgres: data_directory' or 'workspace'"
            )
        specs.append(
            VolumeSpec(
                name=entry["name"],
                path=path,
                problem=problem,
                dedicated=bool(entry.get("dedicated", False)),
                min_free_percent=float(entry.get("min_free_percent", 10)),
                min_free_inodes_percent=float(entry.get("min_free_inodes_percent", 10)),
                reclaimable=_patterns(entry.get("reclaimable"), str(entry["name"])),
                min_age_minutes=float(entry.get("reclaim_min_age_minutes", 30)),
            )
        )
    return specs


def source(config: InfraConfig, name: str) -> str:
    """Where a volume comes from, as the operator reads it."""
    raw = next(v for v in disk_section(config)["volumes"] if v.get("name") == name)
    if raw.get("postgres") == "data_directory":
        return "data_directory of the target's database"
    if "workspace" in raw:
        return f"this incident's {raw['workspace']} folder"
    return str(raw["path"])


def _patterns(raw: Any, name: str) -> tuple[tuple[str, str], ...]:
    """`reclaimable: {kind: [pattern, ...]}` as (kind, pattern) pairs, in order."""
    if raw is None:
        return ()
    if not isinstance(raw, dict) or not all(
        isinstance(v, list) and all(isinstance(p, str) for p in v) for v in raw.values()
    ):
        raise TargetError(f"volume {name}: 'reclaimable' must map a kind to a list of patterns")
    return tuple((str(kind), pattern) for kind, patterns in raw.items() for pattern in patterns)


def quarantine_dir(config: InfraConfig) -> Path:
    """`disk.quarantine`, else .kfm-runbooks/disk/quarantine beside the target."""
    value = disk_section(config).get("quarantine")
    if value is None:
        return config.target.write_area("disk", "quarantine")
    return config.path(value, "disk.quarantine")


# --- measuring ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    name: str
    path: str
    mount_point: str
    fs_type: str
    is_mount: bool
    total: int
    avail: int
    used: int
    files: int
    ffree: int

    @property
    def free_percent(self) -> float:
        return 100.0 * self.avail / self.total if self.total else 0.0

    @property
    def inodes_free_percent(self) -> float | None:
        return 100.0 * self.ffree / self.files if self.files else None  # None: no inode limit

    def as_dict(self) -> dict[str, Any]:
        return {
            "volume": self.name,
            "mount_point": self.mount_point,
            "fs_type": self.fs_type,
            "own_filesystem": self.is_mount,
            "size_bytes": self.total,
            "free_bytes": self.avail,
            "free_percent": round(self.free_percent, 2),
            "inodes": self.files,
            "inodes_free": self.ffree,
            "inodes_free_percent": None
            if self.inodes_free_percent is None
            else round(self.inodes_free_percent, 2),
        }


def mount_point(path: Path) -> Path:
    current = path.resolve()
    while not os.path.ismount(current) and current != current.parent:
        current = current.parent
    return current


def fs_type(point: Path) -> str:
    kind = "unknown"
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return kind
    for line in lines:
        parts = line.split()
        if len(parts) > 2 and parts[1].replace("\\040", " ") == str(point):
            kind = parts[2]  # the last mount on a point is the visible one
    return kind


def measure(name: str, path: Path) -> Usage:
    stats = os.statvfs(path)
    point = mount_point(path)
    return Usage(
        name=name,
        path=str(path),
        mount_point=str(point),
        fs_type=fs_type(point),
        is_mount=os.path.ismount(path),
        total=stats.f_blocks * stats.f_frsize,
        avail=stats.f_bavail * stats.f_frsize,
        used=(stats.f_blocks - stats.f_bfree) * stats.f_frsize,
        files=stats.f_files,
        ffree=stats.f_favail,
    )


def _walk(root: Path) -> list[tuple[Path, os.stat_result]]:
    """Regular files under root on root's filesystem, no symlinks followed; unreadable
    folders are skipped."""
    try:
        device = root.stat().st_dev
    except OSError:
        return []
    found: list[tuple[Path, os.stat_result]] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if entry.is_symlink() or info.st_dev != device:
                continue
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                found.append((Path(entry.path), info))
    return found


def consumers(root: Path, limit: int = 5) -> dict[str, list[dict[str, Any]]]:
    """The biggest top-level entries and the biggest files under root (bytes)."""
    files = _walk(root)
    tops: dict[str, int] = {}
    for path, info in files:
        first = path.relative_to(root).parts[0]
        tops[first] = tops.get(first, 0) + info.st_size
    biggest = sorted(files, key=lambda f: (-f[1].st_size, str(f[0])))[:limit]
    return {
        "entries": [
            {"entry": name, "bytes": size, "folder": (root / name).is_dir()}
            for name, size in sorted(tops.items(), key=lambda t: (-t[1], t[0]))[:limit]
        ],
        "files": [
            {"file": str(path.relative_to(root)), "bytes": info.st_size} for path, info in biggest
        ],
    }


def growth(root: Path, now: float | None = None, hours: int = 24) -> list[int]:
    """Bytes last written in each of the past `hours` hours (index 0: the last hour), from
    the files' modification times."""
    now = time.time() if now is None else now
    buckets = [0] * hours
    for _, info in _walk(root):
        age = now - info.st_mtime
        if 0 <= age < hours * 3600:
            buckets[int(age // 3600)] += info.st_size
    return buckets


def hours_to_full(usage: Usage, buckets: list[int]) -> float | None:
    """At the rate of the last GROWTH_WINDOW_H hours, hours until no space is left."""
    rate = sum(buckets[:GROWTH_WINDOW_H]) / GROWTH_WINDOW_H
    if rate <= 0:
        return None
    return usage.avail / rate


# --- reclaimable files -------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    rel: str
    kind: str
    pattern: str
    size: int


def open_paths() -> set[str]:
    """Every path some process holds open (/proc/*/fd; complete only as root)."""
    found: set[str] = set()
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            entries = list(os.scandir(fd_dir))
        except OSError:
            continue
        for entry in entries:
            try:
                found.add(str(Path(entry.path).readlink()))
            except OSError:
                continue
    return found


def _safe_pattern(pattern: str) -> bool:
    parts = Path(pattern).parts
    return bool(parts) and not Path(pattern).is_absolute() and ".." not in parts


def reclaimable(
    spec: VolumeSpec, now: float | None = None, held: set[str] | None = None
) -> tuple[list[Candidate], list[Finding]]:
    """Files the volume's patterns match that may be moved away, and unsafe patterns."""
    if spec.path is None or not spec.path.is_dir():
        return [], []
    now = time.time() if now is None else now
    held = open_paths() if held is None else held
    root = spec.path.resolve()
    device = root.stat().st_dev
    problems: list[Finding] = []
    chosen: dict[str, Candidate] = {}
    for kind, pattern in spec.reclaimable:
        if not _safe_pattern(pattern):
            problems.append(
                Finding(
                    UNSAFE_PATTERN,
                    spec.name,
                    field="/reclaimable",
                    severity=HOLD,
                    message=f"pattern {pattern!r} is absolute or climbs out of the volume: ignored",
                )
            )
            continue
        for path in sorted(root.glob(pattern)):
            rel = str(path.relative_to(root))
            if rel in chosen or path.is_symlink() or not path.is_file():
                continue
            info = path.stat()
            if info.st_dev != device or root not in path.resolve().parents:
                continue
            if now - info.st_mtime < spec.min_age_minutes * 60 or str(path) in held:
                continue
            chosen[rel] = Candidate(rel, kind, pattern, info.st_size)
    return [chosen[k] for k in sorted(chosen)], problems


# --- assessment ----------------------------------------------------------------------------


@dataclass
class VolumeReport(FindingsReport):
    spec: VolumeSpec
    usage: Usage | None = None
    findings: list[Finding] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    growth: list[int] = field(default_factory=list)
    hours_to_full: float | None = None

    @property
    def status(self) -> str:
        return self.outcome

    @property
    def pressure(self) -> bool:
        return any(f.code in PRESSURE_CODES for f in self.findings)

    def of_kind(self, kind: str) -> list[Candidate]:
        return [c for c in self.candidates if c.kind == kind]

    def by_kind(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for item in self.candidates:
            counts[item.kind] = counts.get(item.kind, 0) + 1
        return counts

    def detail(self) -> str:
        """A deterministic one-line summary for the verification check."""
        spec = self.spec
        blocking = [f for f in self.findings if f.severity in (BLOCKING, HOLD)]
        if blocking:
            return "; ".join(f.message for f in blocking)
        return (
            f"free space at or above {spec.min_free_percent:g}%, free inodes at or above "
            f"{spec.min_free_inodes_percent:g}%"
        )


def assess(
    spec: VolumeSpec, now: float | None = None, held: set[str] | None = None
) -> VolumeReport:
    """Measure one volume now and judge it against its thresholds."""
    report = VolumeReport(spec)
    if spec.path is None:
        report.findings.append(
            Finding(
                UNAVAILABLE, spec.name, severity=HOLD, message=f"cannot measure: {spec.problem}"
            )
        )
        return report
    if not spec.path.is_dir():
        report.findings.append(
            Finding(MISSING, spec.name, message="the volume's folder does not exist")
        )
        return report
    usage = measure(spec.name, spec.path)
    report.usage = usage
    if spec.dedicated and not usage.is_mount:
        report.findings.append(
            Finding(
                NOT_DEDICATED,
                spec.name,
                severity=HOLD,
                message="not its own filesystem (not mounted): its free space is the host "
                "disk's, so its own pressure cannot be judged",
            )
        )
    if usage.free_percent < spec.min_free_percent:
        report.findings.append(
            Finding(
                SPACE_LOW,
                spec.name,
                field="/free_percent",
                message=f"free space below the {spec.min_free_percent:g}% threshold",
            )
        )
    inodes = usage.inodes_free_percent
    if inodes is not None and inodes < spec.min_free_inodes_percent:
        report.findings.append(
            Finding(
                INODES_LOW,
                spec.name,
                field="/inodes_free_percent",
                message=f"free inodes below the {spec.min_free_inodes_percent:g}% threshold",
            )
        )
    report.candidates, problems = reclaimable(spec, now, held)
    report.findings.extend(problems)
    if report.candidates:
        parts = ", ".join(f"{n} {kind}" for kind, n in sorted(report.by_kind().items()))
        report.findings.append(
            Finding(
                RECLAIMABLE,
                spec.name,
                severity=INFO,
                message=f"{len(report.candidates)} reclaimable file(s): {parts}",
            )
        )
    report.growth = growth(spec.path, now)
    report.hours_to_full = hours_to_full(usage, report.growth)
    if report.hours_to_full is not None and report.hours_to_full < FILLING_HORIZON_H:
        report.findings.append(
            Finding(
                FILLING,
                spec.name,
                severity=INFO,
                message=f"at the last {GROWTH_WINDOW_H} h's write rate it fills within "
                f"{FILLING_HORIZON_H} h",
            )
        )
    return report


# --- reclaiming (through the apply gate) and restoring ----------------------------------


def _gunzipsha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with gzip.open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def same_device(a: Path, b: Path) -> bool:
    return _existing(a).stat().st_dev == _existing(b).stat().st_dev


def _inside(root: Path, rel: str) -> Path:
    path = root / rel
    if Path(rel).is_absolute() or ".." in Path(rel).parts or path.is_symlink():
        raise TargetError(f"refusing {rel!r}: not a plain path inside {root}")
    return path


def reclaim(
    spec: VolumeSpec, quarantine: Path, rels: list[str], *, reason: str = ""
) -> dict[str, Any]:
    """Gzip `rels` (relative to the volume) into a new quarantine batch on another volume,
    verify every copy, then remove the originals. Files already gone are skipped."""
    if spec.path is None:
        raise TargetError(f"volume {spec.name} has no path")
    root = spec.path.resolve()
    if same_device(root, quarantine):
        raise TargetError(
            f"quarantine {quarantine} is on the same filesystem as volume {spec.name}: moving "
            "files there frees nothing; name a quarantine on another volume"
        )
    todo = [rel for rel in rels if _inside(root, rel).is_file()]
    if not todo:
        return {"batch": None, "files": 0, "bytes": 0}
    need = sum((root / rel).stat().st_size for rel in todo)
    quarantine.mkdir(parents=True, exist_ok=True)
    spare = shutil.disk_usage(quarantine).free
    if spare < need:
        raise TargetError(f"quarantine has {spare} bytes free, {need} needed: nothing moved")
    name = f"{spec.name}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(2)}"
    batch = quarantine / name
    (batch / "files").mkdir(parents=True)
    entries: list[dict[str, Any]] = []
    for rel in todo:
        source = root / rel
        info = source.stat()
        stored = batch / "files" / f"{rel}.gz"
        stored.parent.mkdir(parents=True, exist_ok=True)
        with source.open("rb") as src, gzip.GzipFile(stored, "wb", mtime=0) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        digest = sha256_file(source)
        if _gunzipsha256_file(stored) != digest:
            raise TargetError(f"the compressed copy of {rel} does not restore: nothing removed")
        entries.append(
            {
                "path": rel,
                "sha256": digest,
                "size": info.st_size,
                "mode": info.st_mode & 0o7777,
                "mtime": info.st_mtime,
                "stored": f"files/{rel}.gz",
                "stored_size": stored.stat().st_size,
            }
        )
    manifest = {"volume": spec.name, "root": str(root), "reason": reason, "files": entries}
    (batch / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    for rel in todo:
        (root / rel).unlink()
    return {
        "batch": name,
        "files": len(entries),
        "bytes": need,
        "stored_bytes": sum(int(e["stored_size"]) for e in entries),
    }


def restore_batch(quarantine: Path, batch: str) -> dict[str, Any]:
    """Undo `reclaim`: decompress each file back (byte-identical, mode and mtime kept).
    A file already back with the same bytes is skipped; one with other bytes is left alone
    (reported as a conflict, its copy kept). Idempotent."""
    if not batch or "/" in batch or batch.startswith("."):
        raise TargetError(f"{batch!r} is not a quarantine batch name")
    folder = quarantine / batch
    if not (folder / MANIFEST).is_file():
        return {"batch": batch, "restored": 0, "note": "batch already restored or unknown"}
    manifest = strict_json.load_file(folder / MANIFEST, MAX_MANIFEST_BYTES)  # links refused
    root = Path(manifest["root"])
    pending = []
    skipped, conflicts = 0, []
    for entry in manifest["files"]:
        dest = _inside(root, entry["path"])
        if dest.exists():
            if dest.is_file() and not dest.is_symlink() and sha256_file(dest) == entry["sha256"]:
                skipped += 1
            else:
                conflicts.append(entry["path"])
            continue
        pending.append(entry)
    need = sum(int(e["size"]) for e in pending)
    if pending and shutil.disk_usage(root).free < need:
        raise TargetError(
            f"volume {manifest['volume']} has not {need} bytes free to take the files back: "
            "free space first, then roll back again"
        )
    for entry in pending:
        dest = root / entry["path"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.restore")
        with gzip.open(folder / entry["stored"], "rb") as src, tmp.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        if sha256_file(tmp) != entry["sha256"]:
            tmp.unlink()
            raise TargetError(f"{entry['path']}: the stored copy does not match its sha256")
        tmp.chmod(int(entry["mode"]))
        os.utime(tmp, (float(entry["mtime"]), float(entry["mtime"])))
        tmp.replace(dest)
    if not conflicts:
        shutil.rmtree(folder)
    return {
        "batch": batch,
        "restored": len(pending),
        "skipped": skipped,
        "conflicts": conflicts,
    }


@undoable("infra.restore_reclaimed")
def _undo_restore_reclaimed(target: Target, batch: str) -> dict[str, Any]:
    """Put the files of a reclaim batch back on their volume (byte-identical)."""
    return restore_batch(quarantine_dir(InfraConfig.from_target(target)), batch)
