"""`kfm-runbook bundle` / `verify --bundle`: one archive of a workspace, checkable anywhere.

The bundle is a tar.gz of the incident workspace (the lock file excepted) with, first,
BUNDLE.json (incident, ledger head, tool version, every file with sha256 and size) and
BUNDLE.sha256 (the same hashes in GNU format: `sha256sum -c BUNDLE.sha256` works in the
unpacked folder without any of our code). `bundle` streams: files are read through
`O_NOFOLLOW` descriptors (a link, FIFO or device in the workspace is refused, never
followed or dropped) and written straight into the compressed archive, each re-hashed on
the way in.

`verify --bundle FILE` never trusts the archive before it has read its headers:

    manifest   BUNDLE.json comes first, is bounded, and is well-formed (incident id,
               relative paths inside the incident's folder, sha256 and size per file)
    headers    a first pass reads every tar header without writing a byte: only regular
               files and folders, only listed names, each exactly its listed size, the
               total within the free space of the temporary folder
    extract    a second pass streams each file into a private folder, capped at its
               listed size and hashed as it is written
    workspace  the unpacked workspace is verified like any other (verify.py), and its
               ledger head compared with the one recorded at bundling time
    signers    the ledger's signatures travel inside it; `bundle --allowed-signers F` also
               carries F (member `allowed_signers`, hashed in BUNDLE.json). `verify --bundle`
               checks the signatures against the file given to it, else the carried one
               (which proves the bundle consistent with itself, not who may sign: said so)
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from . import __version__, manifest
from ._fs import CHUNK, _fsync_dir, is_partial, open_regular, sha256_regular, temp_path
from ._time import now_iso, utc_now
from .errors import InputError
from .history import History
from .ids import INCIDENT_ID_RE
from .layout import default_actor
from .recovery import open_for_update
from .verify import VerifyReport, verify_locked
from .workspace import open_workspace

BUNDLE_JSON = "BUNDLE.json"
BUNDLE_SHA256 = "BUNDLE.sha256"
ALLOWED_SIGNERS = "allowed_signers"  # optional member: the list the signatures were checked by
# Not evidence, never bundled: the lock, and JupyterLab working copies (`open` writes them
# with the real parameter values for the kernel; what is sealed from them is in 10_evidence).
SKIP = frozenset({".lock", "sessions"})
META_LIMIT = 64 << 20  # BUNDLE.json / BUNDLE.sha256 larger than this are not ours
SPARE_BYTES = 64 << 20  # left free in $TMPDIR after unpacking
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass
class BundleReport:
    bundle: str
    incident_id: str | None
    ok: bool
    problems: list[str] = field(default_factory=list)
    files_checked: int = 0
    ledger_head: str | None = None
    workspace: VerifyReport | None = None
    warnings: list[str] = field(default_factory=list)


# --- writing -----------------------------------------------------------------------------


def _members(folder: Path) -> tuple[list[str], list[str]]:
    """(folders, files) below `folder`, relative; a non-regular file is refused. The SKIP
    folders and partial writes (unsealed, unscrubbed) are left out."""
    folders: list[str] = []
    files: list[str] = []
    for parent, dirs, names in os.walk(folder, followlinks=False):
        base = Path(parent)
        if base == folder:
            dirs[:] = [d for d in dirs if d not in SKIP]
        for name in sorted(dirs):
            path = base / name
            if path.is_symlink():
                raise InputError(
                    f"{path.relative_to(folder)} is a symbolic link: a bundle holds the "
                    "workspace's own files only; replace it with the file itself"
                )
            folders.append(path.relative_to(folder).as_posix())
        for name in sorted(names):
            path = base / name
            rel = path.relative_to(folder).as_posix()
            if rel.split("/", 1)[0] in SKIP or is_partial(name):
                continue
            mode = os.lstat(path).st_mode
            if not stat.S_ISREG(mode):
                kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
                raise InputError(
                    f"{rel} is {kind}: a bundle holds regular files only; replace it with the "
                    "file itself"
                )
            files.append(rel)
    return sorted(folders), sorted(files)


class _Hashing(io.RawIOBase):
    """A reader that hashes what passes through it."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.digest.update(data)
        return data


def create_bundle(
    incident_id: str,
    root: str | Path | None = None,
    output: Path | None = None,
    *,
    allowed_signers: Path | None = None,
) -> Path:
    """Pack the workspace into `<root>/bundles/<id>-<UTC>.tar.gz` (or `output`), streaming;
    with `allowed_signers`, the signatures must check against it and it travels along."""
    signers_bytes = _read_signers(allowed_signers)
    workspace = open_for_update(incident_id, root, default_actor())
    with workspace.locked():
        report = verify_locked(workspace, None, allowed_signers=allowed_signers)
        if not report.ok:
            raise InputError(
                f"{incident_id} does not verify ({report.problems[0]}): bundle only intact "
                "evidence; investigate with `kfm-runbook verify` first"
            )
        running = [w for w in report.warnings if "in progress" in w]
        if running:
            raise InputError(f"{incident_id}: {running[0]}: bundle once it is sealed")
        head = History.read(workspace).head
        folders, names = _members(workspace.path)
        files = []
        for rel in names:
            digest, size = sha256_regular(workspace.path / rel, workspace.path)
            files.append({"path": f"{incident_id}/{rel}", "sha256": digest, "size": size})
        if output is None:
            folder = workspace.root / "bundles"
            folder.mkdir(exist_ok=True)
            output = folder / f"{incident_id}-{utc_now():%Y%m%dT%H%M%SZ}.tar.gz"
        if output.exists() or output.is_symlink():
            raise InputError(f"{output} already exists: bundles are never overwritten")
        meta: dict[str, Any] = {
            "incident_id": incident_id,
            "created": now_iso(),
            "ledger_head": head,
            "tool": f"kfm-runbooks {__version__}",
            "files": files,
        }
        if signers_bytes is not None:
            meta[ALLOWED_SIGNERS] = {
                "path": ALLOWED_SIGNERS,
                "sha256": hashlib.sha256(signers_bytes).hexdigest(),
                "size": len(signers_bytes),
            }
        tmp = temp_path(output)
        try:
            _write(tmp, workspace.path, incident_id, meta, folders, signers_bytes)
            os.link(tmp, output)
        except FileExistsError as exc:
            raise InputError(f"{output} already exists: bundles are never overwritten") from exc
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(output.parent)
    return output


def _read_signers(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        data = path.expanduser().read_bytes()
    except OSError as exc:
        raise InputError(
            f"--allowed-signers {path}: cannot be read ({exc.strerror}): give git's "
            "allowed_signers file"
        ) from exc
    if len(data) > META_LIMIT:
        raise InputError(f"--allowed-signers {path}: over {META_LIMIT} bytes, not a signers list")
    return data


def _write(
    dest: Path,
    base: Path,
    incident_id: str,
    meta: dict[str, Any],
    folders: list[str],
    signers_bytes: bytes | None = None,
) -> None:
    meta_bytes = (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode()
    sums = "".join(manifest.format_line(f["sha256"], f["path"]) for f in meta["files"]).encode()
    stamp = int(utc_now().timestamp())

    def info(name: str, size: int = 0, folder: bool = False) -> tarfile.TarInfo:
        item = tarfile.TarInfo(name)
        item.size, item.mtime = size, stamp
        item.type, item.mode = (tarfile.DIRTYPE, 0o755) if folder else (tarfile.REGTYPE, 0o644)
        return item

    with dest.open("wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
        tar.addfile(info(BUNDLE_JSON, len(meta_bytes)), io.BytesIO(meta_bytes))
        tar.addfile(info(BUNDLE_SHA256, len(sums)), io.BytesIO(sums))
        if signers_bytes is not None:
            tar.addfile(info(ALLOWED_SIGNERS, len(signers_bytes)), io.BytesIO(signers_bytes))
        for name in [incident_id, *(f"{incident_id}/{f}" for f in folders)]:
            tar.addfile(info(name, folder=True))  # empty layout folders travel too
        for item in meta["files"]:
            rel = str(item["path"]).split("/", 1)[1]
            with os.fdopen(open_regular(base / rel, base), "rb") as stream:
                hashing = _Hashing(stream)
                tar.addfile(info(item["path"], int(item["size"])), hashing)
            if hashing.digest.hexdigest() != item["sha256"]:
                raise InputError(f"{rel} changed while it was being bundled: run `bundle` again")
        raw.flush()
        os.fsync(raw.fileno())


# --- checking ------------------------------------------------------------------------------


class _Refused(Exception):
    """One line saying why the archive is refused before anything is written."""


def _safe_name(name: str) -> bool:
    path = PurePosixPath(name)
    return bool(name) and not path.is_absolute() and ".." not in path.parts and "\\" not in name


def _read_meta(tar: tarfile.TarFile) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """BUNDLE.json, the archive's first member, checked field by field."""
    first = tar.next()
    if first is not None and not _safe_name(first.name):
        raise _Refused(f"unsafe archive member {first.name!r} (refused)")
    if first is None or first.name != BUNDLE_JSON or not first.isfile():
        raise _Refused(f"{BUNDLE_JSON} is not the first member: not a kfm bundle")
    if first.size > META_LIMIT:
        raise _Refused(f"{BUNDLE_JSON} is {first.size} bytes, over the {META_LIMIT} limit")
    stream = tar.extractfile(first)
    assert stream is not None
    try:
        meta = json.loads(stream.read(META_LIMIT + 1))
    except ValueError as exc:
        raise _Refused(f"{BUNDLE_JSON} is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise _Refused(f"{BUNDLE_JSON} is not a JSON object")
    incident_id = meta.get("incident_id")
    if not isinstance(incident_id, str) or not INCIDENT_ID_RE.fullmatch(incident_id):
        raise _Refused(f"{BUNDLE_JSON}: incident_id {incident_id!r} is not INC-YYYYMMDD-###")
    if not isinstance(meta.get("ledger_head"), str | None):
        raise _Refused(f"{BUNDLE_JSON}: ledger_head is not a string")
    items = meta.get("files")
    if not isinstance(items, list):
        raise _Refused(f"{BUNDLE_JSON}: files is not a list")
    listed: dict[str, dict[str, Any]] = {}
    for index, item in enumerate(items):
        where = f"{BUNDLE_JSON}: files[{index}]"
        if not isinstance(item, dict):
            raise _Refused(f"{where} is not an object")
        path, digest, size = item.get("path"), item.get("sha256"), item.get("size")
        if not isinstance(path, str) or not _safe_name(path):
            raise _Refused(f"{where}: path {path!r} is not a relative path inside the bundle")
        if not path.startswith(f"{incident_id}/"):
            raise _Refused(f"{where}: {path!r} is outside the {incident_id}/ folder")
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise _Refused(f"{where}: sha256 {digest!r} is not 64 lowercase hex digits")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise _Refused(f"{where}: size {size!r} is not a byte count")
        if path in listed:
            raise _Refused(f"{where}: {path} is listed twice")
        listed[path] = item
    carried = meta.get(ALLOWED_SIGNERS)
    if carried is not None:
        where = f"{BUNDLE_JSON}: {ALLOWED_SIGNERS}"
        if not isinstance(carried, dict) or carried.get("path") != ALLOWED_SIGNERS:
            raise _Refused(f"{where} is not {{path: {ALLOWED_SIGNERS}, sha256, size}}")
        digest, size = carried.get("sha256"), carried.get("size")
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise _Refused(f"{where}: sha256 {digest!r} is not 64 lowercase hex digits")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= META_LIMIT:
            raise _Refused(f"{where}: size {size!r} is not a byte count within the limit")
        listed[ALLOWED_SIGNERS] = carried
    return meta, listed


def _check_headers(archive: Path, cap: int) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Pass 1: every header checked against BUNDLE.json; no byte written."""
    with tarfile.open(archive, mode="r:gz") as tar:
        meta, listed = _read_meta(tar)
        total = sum(int(i["size"]) for i in listed.values())
        if total > cap:
            raise _Refused(
                f"the bundle unpacks to {total} bytes, more than the {cap} this machine can "
                "hold in its temporary folder ($TMPDIR)"
            )
        incident_id = str(meta["incident_id"])
        seen: set[str] = set()
        while (member := tar.next()) is not None:
            name = member.name
            if not _safe_name(name):
                raise _Refused(f"unsafe archive member {name!r} (refused)")
            if member.isdir():
                if name != incident_id and not name.startswith(f"{incident_id}/"):
                    raise _Refused(f"unsafe archive member {name!r} (folder outside the incident)")
                continue
            if not member.isfile():
                raise _Refused(f"unsafe archive member {name!r} (not a regular file: refused)")
            if name == BUNDLE_SHA256:
                if member.size > META_LIMIT:
                    raise _Refused(f"{BUNDLE_SHA256} is {member.size} bytes, over the limit")
                continue
            if name not in listed:
                raise _Refused(f"{name}: in the bundle but not listed in {BUNDLE_JSON} (added)")
            if name in seen:
                raise _Refused(f"{name}: in the bundle twice")
            if member.size != listed[name]["size"]:
                raise _Refused(
                    f"{name}: {member.size} bytes in the archive, {listed[name]['size']} in "
                    f"{BUNDLE_JSON} (refused before unpacking)"
                )
            seen.add(name)
        absent = sorted(set(listed) - seen)
        if absent:
            raise _Refused(f"{absent[0]}: listed in {BUNDLE_JSON} but missing")
    return meta, listed


def _members_of(archive: Path) -> Iterator[tuple[tarfile.TarInfo, IO[bytes] | None]]:
    with tarfile.open(archive, mode="r:gz") as tar:
        for member in tar:
            yield member, tar.extractfile(member) if member.isfile() else None


def _extract(archive: Path, dest: Path, listed: dict[str, dict[str, Any]]) -> list[str]:
    """Pass 2: stream each listed file to `dest`, capped at its listed size, hashed."""
    problems: list[str] = []
    for member, stream in _members_of(archive):
        target = dest / member.name
        if member.isdir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        if stream is None:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        limit = int(listed[member.name]["size"]) if member.name in listed else META_LIMIT
        digest = hashlib.sha256()
        written = 0
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as out:
            while chunk := stream.read(min(CHUNK, limit + 1 - written)):
                written += len(chunk)
                if written > limit:
                    problems.append(f"{member.name}: longer than its {limit} listed bytes")
                    break
                digest.update(chunk)
                out.write(chunk)
        if member.name in listed and digest.hexdigest() != listed[member.name]["sha256"]:
            problems.append(f"{member.name}: sha256 differs from {BUNDLE_JSON} (changed)")
    return problems


def verify_bundle(path: str | Path, *, allowed_signers: Path | None = None) -> BundleReport:
    archive = Path(path).expanduser()
    try:
        os.close(open_regular(archive))
    except FileNotFoundError as exc:
        raise InputError(f"bundle {archive} not found") from exc
    except OSError as exc:
        raise InputError(f"bundle {archive} is not a regular file ({exc.strerror})") from exc
    report = BundleReport(bundle=str(archive), incident_id=None, ok=False)
    with tempfile.TemporaryDirectory(prefix="kfm-bundle-") as tmp:
        dest = Path(tmp)
        cap = max(0, shutil.disk_usage(dest).free - SPARE_BYTES)
        try:
            meta, listed = _check_headers(archive, cap)
        except _Refused as exc:
            report.problems.append(str(exc))
            return report
        except (tarfile.TarError, OSError, EOFError, UnicodeDecodeError) as exc:
            report.problems.append(f"not a readable bundle: {type(exc).__name__}: {exc}")
            return report
        report.incident_id = str(meta["incident_id"])
        try:
            report.problems += _extract(archive, dest, listed)
        except (tarfile.TarError, OSError, EOFError) as exc:
            report.problems.append(f"not a readable bundle: {type(exc).__name__}: {exc}")
            return report
        report.files_checked = len(listed) - len(report.problems)
        if report.problems:
            return report
        _verify_inside(report, dest, meta, allowed_signers)
    report.ok = not report.problems
    return report


def _verify_inside(
    report: BundleReport, dest: Path, meta: dict[str, Any], allowed_signers: Path | None
) -> None:
    incident_id = str(meta["incident_id"])
    if not (dest / incident_id).is_dir():
        report.problems.append(f"no {incident_id}/ workspace folder in the bundle")
        return
    carried = dest / ALLOWED_SIGNERS if meta.get(ALLOWED_SIGNERS) is not None else None
    if allowed_signers is None and carried is not None:
        allowed_signers = carried
        report.warnings.append(
            f"signatures checked against the {ALLOWED_SIGNERS} file the bundle carries: that "
            "proves the bundle consistent with itself, not who may sign; give "
            "--allowed-signers FILE from a source you trust"
        )
    workspace = open_workspace(incident_id, dest)
    inner = verify_locked(workspace, meta.get("ledger_head"), allowed_signers=allowed_signers)
    report.workspace = inner
    report.ledger_head = inner.ledger_head
    report.problems += [f"workspace: {p}" for p in inner.problems]
    report.warnings += [f"workspace: {w}" for w in inner.warnings]
    if inner.ledger_head != meta.get("ledger_head"):
        report.problems.append(
            f"ledger head {str(inner.ledger_head)[:16]}… is not the bundled head "
            f"{str(meta.get('ledger_head'))[:16]}…"
        )
