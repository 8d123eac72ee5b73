"""Recovery for the supply-chain runbook: reinstall a pinned wheel from a local wheelhouse.

Only a wheel whose sha256 is the lock's `--hash` for exactly that pin is used; its
members must stay inside site-packages and match the wheel's own RECORD. Every file the
reinstall replaces is kept in a backup folder first, so `restore_backup` (registered as
the undo op `security_wheels.restore_backup`) puts the environment back byte for byte.
No index, no network, no code from the environment is run: files are copied and hashed.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import re
import shutil
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from ..._fs import create_new, replace_atomic
from ..._time import now_iso
from ...target import Target
from ...vocab import Verdict
from .. import undoable
from ..common.files import sha256_file
from .base import inside, read_json, rel
from .supply import EnvConfig, Pin, normalize, parse_lock, record_path, record_rows, scan


def wheel_for(config: EnvConfig, pin: Pin) -> Path | None:
    """A wheel in the wheelhouse for exactly this pin whose sha256 the lock lists."""
    if config.wheelhouse is None or not config.wheelhouse.is_dir() or not pin.hashes:
        return None
    for wheel in sorted(config.wheelhouse.glob("*.whl")):
        name, _, rest = wheel.name.partition("-")
        version = rest.split("-", 1)[0]
        if normalize(name) != pin.name or version != pin.version or wheel.is_symlink():
            continue
        if f"sha256:{sha256_file(wheel)}" in pin.hashes:
            return wheel
    return None


def _safe_member(name: str) -> bool:
    path = PurePosixPath(name)
    return bool(name) and not name.startswith("/") and "\\" not in name and ".." not in path.parts


def _read_wheel(wheel: Path) -> dict[str, bytes]:
    """The wheel's files, each checked against the wheel's own RECORD."""
    with zipfile.ZipFile(wheel) as archive:
        names = [i.filename for i in archive.infolist() if not i.is_dir()]
        bad = [n for n in names if not _safe_member(n)]
        if bad:
            raise ValueError(f"{wheel.name}: unsafe member path {bad[0]!r}")
        files = {n: archive.read(n) for n in names}
    records = [n for n in files if n.endswith(".dist-info/RECORD") and n.count("/") == 1]
    if len(records) != 1:
        raise ValueError(f"{wheel.name}: expected one .dist-info/RECORD")
    if any(n.split("/", 1)[0].endswith(".data") for n in files):
        raise ValueError(f"{wheel.name}: .data folders are not supported here: use pip")
    listed = {}
    for row in csv.reader(files[records[0]].decode().splitlines()):
        if row:
            listed[row[0]] = row[1] if len(row) > 1 else ""
    for name, data in files.items():
        expected = listed.get(name)
        if expected is None:
            raise ValueError(f"{wheel.name}: {name} is not in its RECORD")
        if expected:
            algorithm, _, value = expected.partition("=")
            digest = hashlib.new(algorithm, data).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != value:
                raise ValueError(f"{wheel.name}: {name} does not match its RECORD")
    return files


def _backup_dir(config: EnvConfig, backup_id: str) -> Path:
    return config.backup / re.sub(r"[^A-Za-z0-9._-]", "_", backup_id)


def reinstall_from_wheel(config: EnvConfig, key: str, *, incident: str) -> dict[str, Any]:
    """Replace every installed copy of `key` by the lock's hash-verified wheel.

    The replaced files are kept under the backup folder, so `restore_backup` puts the
    environment back exactly as it was. Running it on an already-correct install changes
    nothing.
    """
    pins, _ = parse_lock(config.lock)
    pin = pins.get(normalize(key))
    if pin is None:
        raise ValueError(f"{key} is not pinned by the lock: change the lock by PR first")
    wheel = wheel_for(config, pin)
    if wheel is None:
        raise ValueError(f"no wheel for {pin.name}=={pin.version} matching the lock's hash")
    current = [r for r in scan(config).dists if r.key == pin.name]
    if len(current) == 1 and current[0].outcome == Verdict.PASS:
        return {"package": pin.name, "version": pin.version, "already": True}
    files = _read_wheel(wheel)
    backup_id = f"{pin.name}-{pin.version}-{incident}"
    folder = _backup_dir(config, backup_id)
    if folder.exists():
        raise ValueError(f"backup {folder.name} exists: restore or remove it first")
    removed: list[str] = []
    for report in current:
        dist_info = config.site_packages / report.dist_info
        for row in record_rows(dist_info) or []:
            path = record_path(row[0], config)
            if path is not None and path.is_file() and not path.is_symlink():
                removed.append(rel(path, config.root))
        for extra in sorted(dist_info.rglob("*")):
            name = rel(extra, config.root)
            if extra.is_file() and name not in removed:
                removed.append(name)
    folder.mkdir(parents=True)
    for name in removed:
        source = config.root / name
        dest = folder / "files" / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest)
    installed = sorted(rel(config.site_packages / n, config.root) for n in files)
    record = {
        "backup_id": backup_id,
        "package": pin.name,
        "from": sorted({r.version for r in current}),
        "to": pin.version,
        "wheel": wheel.name,
        "removed": sorted(removed),
        "installed": installed,
        "incident": incident,
        "at": now_iso(),
    }
    create_new(folder / "record.json", (json.dumps(record, indent=2) + "\n").encode())
    for name in removed:
        (config.root / name).unlink()
    _prune_empty(config, removed)
    for name, data in sorted(files.items()):
        dest = config.site_packages / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        replace_atomic(dest, data)
    return {k: record[k] for k in ("backup_id", "package", "from", "to", "wheel")} | {
        "removed": len(removed),
        "installed": len(installed),
        "already": False,
    }


def _prune_empty(config: EnvConfig, names: list[str]) -> None:
    folders = sorted({(config.root / n).parent for n in names}, key=lambda p: -len(p.parts))
    for folder in folders:
        while inside(folder, config.site_packages) and folder != config.site_packages:
            try:
                folder.rmdir()
            except OSError:
                break
            folder = folder.parent


def restore_backup(config: EnvConfig, backup_id: str) -> dict[str, Any]:
    """Undo `reinstall_from_wheel`: remove what it installed, put the old files back."""
    folder = _backup_dir(config, backup_id)
    record_path = folder / "record.json"
    if not record_path.is_file():
        return {"backup_id": backup_id, "restored": False, "reason": "no such backup"}
    record, code = read_json(record_path)  # a link or oversized record: refused, not followed
    if not isinstance(record, dict):
        raise ValueError(f"backup {backup_id}: record.json cannot be read ({code})")
    for name in record["installed"]:
        path = config.root / name
        if inside(path, config.root) and path.is_file():
            path.unlink()
    _prune_empty(config, record["installed"])
    for name in record["removed"]:
        source = folder / "files" / name
        dest = config.root / name
        if not inside(dest, config.root):
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest)
    shutil.rmtree(folder)
    return {"backup_id": backup_id, "restored": True, "package": record["package"]}


@undoable("security_wheels.restore_backup")
def _undo_restore_backup(target: Target, backup_id: str) -> dict[str, Any]:
    return restore_backup(EnvConfig.from_target(target), backup_id)
