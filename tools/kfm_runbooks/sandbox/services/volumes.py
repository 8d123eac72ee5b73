"""The live sandbox's own data volume: a small tmpfs under the sandbox, never the real disks.

`mount(folder, ...)` mounts a tmpfs (`kfm-sbx-data`, a few MiB and a few hundred inodes)
at <sandbox>/live/data when we are root and the kernel allows it, and seeds the intended
content (an export, the current application log). Without the permission it leaves a plain
folder and says why: the disk-pressure fault then refuses to run (filling a plain folder
would fill the machine's real disk), and the disk runbook reports the volume as HOLD.
`unmount(folder)` unmounts it and removes the mount point; `down` calls it.

The disk-pressure fault (`pressure(folder, True)`) writes what a stuck log rotation and an
exporter leaking temp files leave behind — rotated logs and orphaned temp files with
modification times over the past hours — until free space and free inodes are below the
runbook's thresholds; `pressure(folder, False)` removes exactly those files again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from ...errors import SetupError

SOURCE = "kfm-sbx-data"
SIZE_MIB = 16
INODES = 448
EXPORT = "exports/observations-2026.bin"
EXPORT_BYTES = 3 * 1024 * 1024
APP_LOG = "logs/app.log"
ROTATED = [f"logs/app.log.{n}" for n in range(1, 7)]
ROTATED_BYTES = 1792 * 1024
TEMP_FILES = [f"tmp/render-{n:04d}.tmp" for n in range(1, 401)]
TEMP_BYTES = 4096
OLD = 30 * 86400  # the baseline was written a month ago: it is not recent growth


def data_dir(folder: Path) -> Path:
    return folder / "live" / "data"


def _pseudo_random(size: int, seed: bytes) -> bytes:
    """Deterministic, incompressible bytes (an export is compressed data already)."""
    out = bytearray()
    block = hashlib.sha256(seed).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block * 4
    return bytes(out[:size])


def _log_lines(size: int, start: int) -> bytes:
    out = bytearray()
    n = start
    while len(out) < size:
        out += (
            f"127.0.0.1 - public [27/Nov/2026:{n // 3600 % 24:02d}:{n // 60 % 60:02d}:"
            f'{n % 60:02d} +0000] "GET /api/v1/layers/drought-monitor/tiles/6/{n % 64}/'
            f'{n % 41} HTTP/1.1" 200 {2048 + n % 997} "-" "kfm-viewer/2.0" {900 + n % 4000}\n'
        ).encode()
        n += 1
    return bytes(out[:size])


def _write(path: Path, data: bytes, age_s: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        out.write(data)
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))


def seed(root: Path) -> None:
    """The intended content of the data volume."""
    if not (root / EXPORT).exists():
        _write(root / EXPORT, _pseudo_random(EXPORT_BYTES, b"kfm-export"), OLD)
    if not (root / APP_LOG).exists():
        _write(root / APP_LOG, _log_lines(64 * 1024, 0), 60)
    (root / "tmp").mkdir(exist_ok=True)


def mount(folder: Path, size_mib: int = SIZE_MIB, inodes: int = INODES) -> dict[str, Any]:
    """Mount the data volume (tmpfs) and seed it; {"mounted": False, "reason": ...} if not
    permitted (then a plain folder is seeded instead)."""
    root = data_dir(folder)
    info: dict[str, Any] = {"path": str(root), "size_mib": size_mib, "inodes": inodes}
    if os.path.ismount(root):
        seed(root)
        return {**info, "mounted": True}
    if root.exists():
        shutil.rmtree(root)  # a leftover plain folder of an earlier run: runtime data only
    root.mkdir(parents=True)
    reason = ""
    if os.geteuid() != 0:
        reason = "mounting a tmpfs needs root"
    elif shutil.which("mount") is None:
        reason = "the `mount` command is missing"
    else:
        result = subprocess.run(
            [
                "mount",
                "-t",
                "tmpfs",
                "-o",
                f"size={size_mib}m,nr_inodes={inodes},mode=0755,nosuid,nodev,noexec",
                SOURCE,
                str(root),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            reason = (result.stderr.strip().splitlines() or ["mount refused"])[-1]
    seed(root)
    if reason:
        return {**info, "mounted": False, "reason": reason}
    return {**info, "mounted": True}


def unmount(folder: Path) -> bool:
    """Unmount the data volume (lazily if busy) and remove its mount point; True if it was
    mounted. Never removes anything while a filesystem is still mounted there."""
    root = data_dir(folder)
    was = os.path.ismount(root)
    if was:
        done = subprocess.run(["umount", str(root)], capture_output=True, timeout=30, check=False)
        if done.returncode != 0:
            subprocess.run(
                ["umount", "-l", str(root)], capture_output=True, timeout=30, check=False
            )
    if os.path.ismount(root):
        raise SetupError(f"could not unmount the sandbox data volume at {root}: unmount it by hand")
    if root.exists():
        shutil.rmtree(root)
    return was


def pressure(folder: Path, on: bool) -> dict[str, Any]:
    """Switch the disk-pressure fault's files on or off on the data volume."""
    root = data_dir(folder)
    if on:
        if not os.path.ismount(root):
            raise SetupError(
                f"refusing disk-pressure: {root} is not the sandbox's own small volume "
                "(mounting a tmpfs was not permitted), and filling it would fill the "
                "machine's real disk"
            )
        now = time.time()
        for index, name in enumerate(ROTATED):
            if not (root / name).exists():
                _write(root / name, _log_lines(ROTATED_BYTES, index * 100_000), 0)
                stamp = now - (index + 0.5) * 3600 - 600
                os.utime(root / name, (stamp, stamp))
        for index, name in enumerate(TEMP_FILES):
            if not (root / name).exists():
                _write(root / name, _pseudo_random(TEMP_BYTES, name.encode()), 0)
                stamp = now - 3600 - index * 9
                os.utime(root / name, (stamp, stamp))
        return {"written": len(ROTATED) + len(TEMP_FILES)}
    removed = 0
    for name in ROTATED + TEMP_FILES:
        path = root / name
        if path.is_file():
            path.unlink()
            removed += 1
    return {"removed": removed}
