"""Crash-safe file primitives: atomic create, atomic replace, locked append, hashing.

Evidence is written to a temporary file in the destination folder, flushed to disk and
then published with a single link/rename, so a reader never sees half a file. Evidence
files are *created*, never replaced: `create_new` refuses an existing destination.
Kept free of heavy imports: the in-kernel helper uses it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import SetupError

PARTIAL_SUFFIX = ".partial"


def is_partial(name: str) -> bool:
    """Hidden in-progress files: `.<name>.<random>.partial` and `.<run>.partial.ipynb`."""
    base = name.rsplit("/", 1)[-1]
    return base.startswith(".") and PARTIAL_SUFFIX in base


LOCK_TIMEOUT_S = 120.0


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def temp_path(dest: Path) -> Path:
    """A fresh hidden temp name beside `dest` (same folder, so rename is atomic)."""
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=PARTIAL_SUFFIX, dir=dest.parent)
    os.close(fd)
    return Path(name)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temp(dest: Path, data: bytes) -> Path:
    tmp = temp_path(dest)
    try:
        with tmp.open("wb") as stream:
            os.fchmod(stream.fileno(), 0o644)
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def publish_new(tmp: Path, dest: Path) -> None:
    """Move a finished temp file to `dest`, refusing to replace an existing file."""
    try:
        os.link(tmp, dest)
    except FileExistsError:
        tmp.unlink(missing_ok=True)
        raise
    tmp.unlink()
    _fsync_dir(dest.parent)


def create_new(dest: Path, data: bytes) -> None:
    """Atomically create `dest` with `data`; FileExistsError if it already exists."""
    publish_new(_write_temp(dest, data), dest)


def replace_atomic(dest: Path, data: bytes) -> None:
    """Atomically replace mutable state (never evidence) such as incident.yaml."""
    tmp = _write_temp(dest, data)
    tmp.replace(dest)
    _fsync_dir(dest.parent)


def append_bytes(path: Path, data: bytes) -> None:
    """Append with one O_APPEND write and fsync. Callers hold the workspace lock."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def file_lock(lock_path: Path, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Exclusive advisory lock on `lock_path` (flock), waiting up to `timeout` seconds."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise SetupError(
                        f"could not lock {lock_path} within {timeout:.0f}s: another kfm-runbook "
                        "command holds it; wait for it to finish and retry"
                    ) from exc
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)
