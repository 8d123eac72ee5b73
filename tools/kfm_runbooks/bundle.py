"""`kfm-runbook bundle` / `verify --bundle`: one archive of a workspace, checkable anywhere.

The bundle is a tar.gz of the incident workspace (the lock file excepted) plus, at its
root, BUNDLE.json (incident, ledger head, tool version, every file with sha256 and size)
and BUNDLE.sha256 (the same hashes in GNU format: `sha256sum -c BUNDLE.sha256` works in
the unpacked folder without any of our code). `verify --bundle FILE` unpacks it safely
(no absolute paths, no `..`, no links, no devices) into a temporary folder, checks every
file against BUNDLE.json, refuses unlisted files, then runs the full workspace `verify`
and compares the ledger head with the one recorded at bundling time.
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__, manifest
from ._fs import create_new, is_partial, sha256_bytes, sha256_file
from ._time import now_iso, utc_now
from .errors import InputError
from .history import History
from .verify import VerifyReport, verify_locked
from .workspace import open_workspace

BUNDLE_JSON = "BUNDLE.json"
BUNDLE_SHA256 = "BUNDLE.sha256"
# Not evidence, never bundled: the lock, and JupyterLab working copies (`open` writes them
# with the real parameter values for the kernel; what is sealed from them is in 10_evidence).
SKIP = frozenset({".lock", "sessions"})


@dataclass
class BundleReport:
    bundle: str
    incident_id: str | None
    ok: bool
    problems: list[str] = field(default_factory=list)
    files_checked: int = 0
    ledger_head: str | None = None
    workspace: VerifyReport | None = None


def _files(folder: Path) -> list[Path]:
    """Files to bundle: not the SKIP folders, and no partial write (unsealed, unscrubbed)."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and not p.is_symlink()
        and p.relative_to(folder).parts[0] not in SKIP
        and not is_partial(p.name)
    )


def create_bundle(
    incident_id: str, root: str | Path | None = None, output: Path | None = None
) -> Path:
    """Pack the workspace into `<root>/bundles/<id>-<UTC>.tar.gz` (or `output`)."""
    workspace = open_workspace(incident_id, root)
    with workspace.locked():
        report = verify_locked(workspace, None)
        if not report.ok:
            raise InputError(
                f"{incident_id} does not verify ({report.problems[0]}): bundle only intact "
                "evidence; investigate with `kfm-runbook verify` first"
            )
        head = History.read(workspace).head
        folders = sorted(
            f"{incident_id}/{p.relative_to(workspace.path).as_posix()}"
            for p in workspace.path.rglob("*")
            if p.is_dir()
            and not p.is_symlink()
            and p.relative_to(workspace.path).parts[0] not in SKIP
        )
        files: list[dict[str, Any]] = []
        payload: dict[str, bytes] = {}
        for path in _files(workspace.path):
            rel = f"{incident_id}/{path.relative_to(workspace.path).as_posix()}"
            data = path.read_bytes()
            payload[rel] = data
            files.append({"path": rel, "sha256": sha256_bytes(data), "size": len(data)})
    meta = {
        "incident_id": incident_id,
        "created": now_iso(),
        "ledger_head": head,
        "tool": f"kfm-runbooks {__version__}",
        "files": files,
    }
    meta_bytes = (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode()
    sums = "".join(manifest.format_line(f["sha256"], f["path"]) for f in files).encode()
    buffer = io.BytesIO()
    stamp = int(utc_now().timestamp())
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for directory in [incident_id, *folders]:  # empty layout folders travel too
            info = tarfile.TarInfo(directory)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, stamp
            tar.addfile(info)
        for name, data in [(BUNDLE_JSON, meta_bytes), (BUNDLE_SHA256, sums), *payload.items()]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = stamp
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    if output is None:
        folder = workspace.root / "bundles"
        folder.mkdir(exist_ok=True)
        output = folder / f"{incident_id}-{utc_now():%Y%m%dT%H%M%SZ}.tar.gz"
    try:
        create_new(output, buffer.getvalue())
    except FileExistsError as exc:
        raise InputError(f"{output} already exists: bundles are never overwritten") from exc
    return output


def _safe_extract(archive: Path, dest: Path) -> list[str]:
    problems: list[str] = []
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                parts = Path(member.name).parts
                if (
                    member.name.startswith("/")
                    or ".." in parts
                    or not (member.isfile() or member.isdir())
                ):
                    problems.append(f"unsafe archive member {member.name!r} (refused)")
            if problems:
                return problems
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        problems.append(f"not a readable bundle: {type(exc).__name__}: {exc}")
    return problems


def verify_bundle(path: str | Path) -> BundleReport:
    archive = Path(path).expanduser()
    if not archive.is_file():
        raise InputError(f"bundle {archive} not found")
    report = BundleReport(bundle=str(archive), incident_id=None, ok=False)
    with tempfile.TemporaryDirectory(prefix="kfm-bundle-") as tmp:
        dest = Path(tmp)
        report.problems += _safe_extract(archive, dest)
        if report.problems:
            return report
        try:
            meta = json.loads((dest / BUNDLE_JSON).read_text())
        except (OSError, ValueError):
            report.problems.append(f"{BUNDLE_JSON} is missing or unreadable: not a kfm bundle")
            return report
        report.incident_id = meta.get("incident_id")
        listed = {f["path"]: f for f in meta.get("files", [])}
        for name, item in listed.items():
            file = dest / name
            if not file.is_file():
                report.problems.append(f"{name}: listed in {BUNDLE_JSON} but missing")
            elif sha256_file(file) != item["sha256"]:
                report.problems.append(f"{name}: sha256 differs from {BUNDLE_JSON} (changed)")
            else:
                report.files_checked += 1
        for file in _files(dest):
            rel = file.relative_to(dest).as_posix()
            if rel not in listed and rel not in (BUNDLE_JSON, BUNDLE_SHA256):
                report.problems.append(f"{rel}: in the bundle but not listed (added)")
        incident_id = str(report.incident_id)
        if (dest / incident_id).is_dir():
            workspace = open_workspace(incident_id, dest)
            inner = verify_locked(workspace, meta.get("ledger_head"))
            report.workspace = inner
            report.ledger_head = inner.ledger_head
            report.problems += [f"workspace: {p}" for p in inner.problems]
            if inner.ledger_head != meta.get("ledger_head"):
                report.problems.append(
                    f"ledger head {str(inner.ledger_head)[:16]}… is not the bundled head "
                    f"{str(meta.get('ledger_head'))[:16]}…"
                )
        else:
            report.problems.append(f"no {incident_id}/ workspace folder in the bundle")
    report.ok = not report.problems
    return report
