"""Published releases: manifests that promise files the release does not hold.

A release tree is a folder of release folders, each with a manifest, and a `current`
symlink naming the release readers are served::

    releases/
      2026-06-01/MANIFEST.json  {"release_id", "created_at", "files": [{"path", "bytes", "sha256"}]}
      2026-06-02/...
      current -> 2026-06-02
      .withdrawn/<release>.json   releases withdrawn from promotion (recovery)

A release is complete when every listed file exists inside it with the declared size and
sha256 and no temp leftover (`*.tmp`, `*.part`, `.x.partial`, `_temporary/`...) sits
beside them. The pointer must name a release folder of the tree (no escape) and that
release must be complete. Optionally, KFM source-ingestion plans are checked against their
JSON Schema (a scheduled ETL lane must allow partial reruns and checkpoints) and their
content-bound spec hash.

Re-pointing `current` (an atomic symlink swap) and withdrawing a partial release are the
reversible changes.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import TargetError
from ...target import Target
from ...vocab import Verdict
from .. import BLOCKING, INFO, Finding, undoable
from ..common import holding
from ..common.files import sha256_tagged
from ..common.jcs import spec_hash_matches
from .base import (
    SHA256_RE,
    FileReport,
    SchemaValidator,
    contained,
    json_files,
    optional_validator,
    read_json,
    rel,
    write_json,
)

SECTION = "pipelines_releases"
WITHDRAWN = ".withdrawn"
TEMP_RE = re.compile(
    r"(^\..*\.partial$)|(\.(tmp|temp|part|partial|inprogress|crdownload)$)|(~$)|(^_temporary$)|(^\.~)"
)
INTEGRITY_CODES = frozenset(
    {
        "RELEASE_MANIFEST_MISSING",
        "RELEASE_MANIFEST_INVALID",
        "RELEASE_PATH_ESCAPE",
        "RELEASE_SYMLINK_DENIED",
        "RELEASE_FILE_MISSING",
        "RELEASE_FILE_TRUNCATED",
        "RELEASE_FILE_SIZE_MISMATCH",
        "RELEASE_FILE_DIGEST_MISMATCH",
        "RELEASE_TEMP_LEFTOVER",
    }
)
POINTER_CODES = frozenset(
    {
        "RELEASE_POINTER_MISSING",
        "RELEASE_POINTER_ESCAPE",
        "RELEASE_POINTER_DANGLING",
        "RELEASE_CURRENT_PARTIAL",
    }
)


@dataclass(frozen=True)
class ReleaseConfig:
    base: Path
    root: Path | None
    pointer: str
    manifest: str
    plans: tuple[Path, ...]
    plan_schema: SchemaValidator | None

    @classmethod
    def from_target(cls, target: Target) -> ReleaseConfig:
        section = target.section(SECTION)
        pointer, manifest = (
            section.get("pointer", "current"),
            section.get("manifest", "MANIFEST.json"),
        )
        for key, value in (("pointer", pointer), ("manifest", manifest)):
            if not isinstance(value, str) or "/" in value or value in ("", ".", ".."):
                raise TargetError(
                    f"target {target.path}: '{SECTION}.{key}' must be a plain file name"
                )
        root = target.resolve(SECTION, "root", required=False)
        plans = tuple(target.resolve_many(SECTION, "plans"))
        if root is None and not plans:
            raise TargetError(f"target {target.path}: '{SECTION}' needs 'root' or 'plans'")
        return cls(
            target.base,
            root,
            pointer,
            manifest,
            plans,
            optional_validator(target, SECTION, "plan_schema"),
        )


# --- releases --------------------------------------------------------------------------


def _is_temp(name: str) -> bool:
    return bool(TEMP_RE.search(name))


def _listed(report: FileReport, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    files = manifest.get("files")
    entries = files if isinstance(files, list) else []
    good = [
        e
        for e in entries
        if isinstance(e, dict)
        and isinstance(e.get("path"), str)
        and isinstance(e.get("bytes"), int)
        and not isinstance(e.get("bytes"), bool)
        and e["bytes"] >= 0
        and isinstance(e.get("sha256"), str)
        and SHA256_RE.fullmatch(e["sha256"])
    ]
    if not isinstance(files, list) or not files or len(good) != len(entries):
        report.add(
            "RELEASE_MANIFEST_INVALID",
            "/files",
            "files must list {path, bytes, sha256:<hex>} entries",
        )
    return good


def _check_file(report: FileReport, folder: Path, index: int, entry: dict[str, Any]) -> str | None:
    """Verify one listed file; returns its path relative to the release when it is inside."""
    where = f"/files/{index}"
    path, code = contained(folder, entry["path"])
    if path is None:
        kind = "RELEASE_SYMLINK_DENIED" if code == "SYMLINK_DENIED" else "RELEASE_PATH_ESCAPE"
        report.add(kind, where, f"{entry['path']!r} is not a plain file inside the release")
        return None
    if not path.is_file():
        report.add("RELEASE_FILE_MISSING", where, f"{entry['path']} listed but absent")
        return entry["path"]  # type: ignore[no-any-return]
    size = path.stat().st_size
    if size < entry["bytes"]:
        report.add(
            "RELEASE_FILE_TRUNCATED", where, f"{entry['path']}: {size} of {entry['bytes']} bytes"
        )
    elif size > entry["bytes"]:
        report.add(
            "RELEASE_FILE_SIZE_MISMATCH",
            where,
            f"{entry['path']}: {size} bytes, manifest says {entry['bytes']}",
        )
    elif sha256_tagged(path) != entry["sha256"]:
        report.add(
            "RELEASE_FILE_DIGEST_MISMATCH",
            where,
            f"{entry['path']}: sha256 differs from the manifest",
        )
    else:
        report.details["files_ok"] = report.details.get("files_ok", 0) + 1
    return entry["path"]  # type: ignore[no-any-return]


def scan_release(folder: Path, config: ReleaseConfig) -> FileReport:
    assert config.root is not None
    report = FileReport(folder.name, error_codes=frozenset())
    report.details.update(files_listed=0, files_ok=0, created_at=None)
    manifest, code = read_json(folder / config.manifest)
    if manifest is None:
        report.add("RELEASE_MANIFEST_MISSING", f"/{config.manifest}", f"manifest unusable ({code})")
        return report
    report.details["created_at"] = (
        manifest.get("created_at") if isinstance(manifest.get("created_at"), str) else None
    )
    entries = _listed(report, manifest)
    report.details["files_listed"] = len(entries)
    listed = {p for i, e in enumerate(entries) if (p := _check_file(report, folder, i, e))}
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if name == config.manifest or (
            path.is_dir() and not path.is_symlink() and not _is_temp(path.name)
        ):
            continue
        if _is_temp(path.name):
            report.add(
                "RELEASE_TEMP_LEFTOVER",
                f"/{name}",
                f"temp leftover {name}: the write never finished",
            )
        elif path.is_symlink():
            report.add("RELEASE_SYMLINK_DENIED", f"/{name}", f"{name} is a symlink")
        elif name not in listed:
            report.add("RELEASE_FILE_UNLISTED", f"/{name}", f"{name} not in the manifest", INFO)
    report.details["complete"] = report.outcome == Verdict.PASS
    return report


@dataclass
class Pointer:
    name: str
    target: str | None  # the release it names, when it names one of the tree
    code: str | None


def read_pointer(config: ReleaseConfig) -> Pointer:
    assert config.root is not None
    link = config.root / config.pointer
    if not link.is_symlink():
        return Pointer(config.pointer, None, "RELEASE_POINTER_MISSING")
    raw = str(link.readlink())
    if (
        "/" in raw.rstrip("/")
        or raw in (".", "..", "")
        or raw.startswith(".")
        or raw == config.pointer
    ):
        return Pointer(config.pointer, None, "RELEASE_POINTER_ESCAPE")
    name = raw.rstrip("/")
    folder = config.root / name
    if folder.is_symlink() or not folder.is_dir():
        return Pointer(config.pointer, name, "RELEASE_POINTER_DANGLING")
    return Pointer(config.pointer, name, None)


# --- ingestion plans -------------------------------------------------------------------


def scan_plan(path: Path, config: ReleaseConfig) -> FileReport:
    """KFM source-ingestion plan: schema, then content-bound spec hash and plan id."""
    report = FileReport(rel(path, config.base))
    plan, code = read_json(path)
    if plan is None:
        report.add(code or "INPUT_READ_ERROR", message="plan unreadable")
        return report
    if config.plan_schema is not None:
        for error in config.plan_schema.errors(plan):
            report.add("SCHEMA_INVALID", error.pointer, f"{error.keyword}: {error.message[:120]}")
        if report.findings:
            return report
    det = plan.get("determinism") if isinstance(plan.get("determinism"), dict) else {}
    assert isinstance(det, dict)
    declared = det.get("spec_hash")
    subject = {k: v for k, v in plan.items() if k != "plan_id"}
    subject["determinism"] = {k: v for k, v in det.items() if k != "spec_hash"}
    if not spec_hash_matches(declared, subject, det.get("canonicalization_profile")):
        report.add(
            "PLAN_SPEC_HASH_MISMATCH",
            "/determinism/spec_hash",
            "spec_hash does not bind the plan's content",
        )
    elif not str(plan.get("plan_id", "")).endswith("/" + str(declared).removeprefix("sha256:")):
        report.add("PLAN_ID_MISMATCH", "/plan_id", "plan_id does not end with the spec hash")
    lane = plan.get("lane") if isinstance(plan.get("lane"), dict) else {}
    assert isinstance(lane, dict)
    partition = lane.get("partition_plan") if isinstance(lane.get("partition_plan"), dict) else {}
    assert isinstance(partition, dict)
    if lane.get("kind") == "SCHEDULED_ETL" and not (
        partition.get("partial_rerun") is True
        and lane.get("checkpointing") is True
        and lane.get("resumable_temp_artifacts") is True
    ):
        report.add(
            "PLAN_NO_PARTIAL_RERUN",
            "/lane",
            "a scheduled ETL lane must checkpoint and rerun partitions",
        )
    return report


# --- one pass --------------------------------------------------------------------------


@dataclass
class ReleaseScan:
    releases: list[FileReport]
    pointer: Pointer | None
    pointer_findings: list[Finding]
    withdrawn: list[str]
    plans: list[FileReport]

    @property
    def findings(self) -> list[Finding]:
        out = [f for r in self.releases for f in r.findings] + self.pointer_findings
        return out + [f for p in self.plans for f in p.findings]

    def release(self, name: str | None) -> FileReport | None:
        return next((r for r in self.releases if r.file == name), None)

    @property
    def current(self) -> FileReport | None:
        return self.release(self.pointer.target) if self.pointer else None

    def complete(self) -> list[FileReport]:
        """Complete releases, newest first (created_at, then name)."""
        done = [r for r in self.releases if r.outcome == Verdict.PASS]
        return sorted(
            done, key=lambda r: (str(r.details.get("created_at") or ""), r.file), reverse=True
        )

    def fallback(self) -> FileReport | None:
        """The release `current` should name instead: the newest complete one."""
        current = self.current
        if current is not None and current.outcome == Verdict.PASS:
            return None
        done = self.complete()
        return done[0] if done else None

    def partial_not_withdrawn(self) -> list[FileReport]:
        current = self.pointer.target if self.pointer else None
        return [
            r
            for r in self.releases
            if r.outcome != Verdict.PASS and r.file not in self.withdrawn and r.file != current
        ]


def withdrawn_releases(config: ReleaseConfig) -> list[str]:
    assert config.root is not None
    folder = config.root / WITHDRAWN
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def scan(config: ReleaseConfig) -> ReleaseScan:
    plans = [scan_plan(p, config) for p in json_files(config.plans)]
    if config.root is None:
        return ReleaseScan([], None, [], [], plans)
    folders = sorted(
        p
        for p in config.root.iterdir()
        if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")
    )
    releases = [scan_release(p, config) for p in folders]
    pointer = read_pointer(config)
    found = []
    if pointer.code:
        found.append(
            Finding(
                pointer.code,
                config.pointer,
                "/",
                BLOCKING,
                f"{config.pointer} does not name a release folder of the tree",
            )
        )
    else:
        current = next(r for r in releases if r.file == pointer.target)
        if current.outcome != Verdict.PASS:
            found.append(
                Finding(
                    "RELEASE_CURRENT_PARTIAL",
                    config.pointer,
                    "/",
                    BLOCKING,
                    f"readers are served {pointer.target}, a partial release "
                    f"({', '.join(current.codes)})",
                )
            )
    return ReleaseScan(releases, pointer, found, withdrawn_releases(config), plans)


# --- reversible changes ----------------------------------------------------------------


def repoint(config: ReleaseConfig, release: str) -> dict[str, Any]:
    """Atomically point `current` at `release` (a new symlink renamed over the old one)."""
    assert config.root is not None
    folder = config.root / release
    if "/" in release or release.startswith(".") or not folder.is_dir() or folder.is_symlink():
        raise TargetError(f"{release!r} is not a release folder of {config.root}")
    link = config.root / config.pointer
    previous = str(link.readlink()) if link.is_symlink() else None
    if previous == release:
        return {"pointer": config.pointer, "changed": False, "to": release, "from": previous}
    temp = config.root / f".{config.pointer}.{secrets.token_hex(4)}.partial"
    temp.symlink_to(release)
    temp.replace(link)
    fd = os.open(config.root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return {"pointer": config.pointer, "changed": True, "to": release, "from": previous}


def withdraw(config: ReleaseConfig, release: str, *, incident: str, reason: str) -> dict[str, Any]:
    """Record `release` as withdrawn from promotion (never re-pointed to). Idempotent."""
    assert config.root is not None
    marker = config.root / WITHDRAWN / f"{release}.json"
    if "/" in release or release.startswith("."):
        raise TargetError(f"{release!r} is not a release name")
    if marker.is_file():
        return {"release": release, "withdrawn": True, "already": True}
    write_json(marker, {"release": release, **holding.record(incident, reason)})
    return {"release": release, "withdrawn": True, "already": False}


def reinstate(config: ReleaseConfig, release: str) -> dict[str, Any]:
    """Undo `withdraw`. Safe to run twice."""
    assert config.root is not None
    marker = config.root / WITHDRAWN / f"{release}.json"
    if "/" in release or not marker.is_file():
        return {"release": release, "reinstated": False, "reason": "not withdrawn"}
    marker.unlink()
    return {"release": release, "reinstated": True}


@undoable("pipelines.repoint_release")
def _undo_repoint(target: Target, release: str) -> dict[str, Any]:
    return repoint(ReleaseConfig.from_target(target), release)


@undoable("pipelines.reinstate_release")
def _undo_withdraw(target: Target, release: str) -> dict[str, Any]:
    return reinstate(ReleaseConfig.from_target(target), release)
