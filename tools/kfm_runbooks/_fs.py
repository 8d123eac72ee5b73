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
import stat
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
CHUNK = 1 << 20

_KINDS = {
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a directory",
}


class NotRegularError(OSError):
    """Evidence that is not a regular file (a link, FIFO, device, folder): never read."""

    def __init__(self, path: Path, kind: str) -> None:
        super().__init__(errno.EINVAL, f"{kind}, not a regular file", str(path))
        self.kind = kind


def _kind(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def open_regular(path: Path, base: Path | None = None) -> int:
    """A read-only fd on `path`, which must be a regular file reached without links.

    O_NOFOLLOW refuses a symlink as the last component, O_NONBLOCK keeps a FIFO from
    blocking the open, fstat then refuses anything that is not S_ISREG. With `base`, every
    folder between `base` and the file must be a real folder too (not a link out).
    FileNotFoundError when absent, NotRegularError otherwise.
    """
    if base is not None:
        folder = base
        for part in path.relative_to(base).parts[:-1]:
            folder = folder / part
            with contextlib.suppress(FileNotFoundError):
                mode = os.lstat(folder).st_mode
                if not stat.S_ISDIR(mode):
                    raise NotRegularError(folder, _kind(mode))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotRegularError(path, "a symbolic link") from exc
        raise
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise NotRegularError(path, _kind(mode))
    return fd


def read_regular(path: Path, limit: int | None = None, base: Path | None = None) -> bytes:
    """All bytes of a regular file (see `open_regular`); ValueError beyond `limit` bytes."""
    fd = open_regular(path, base)
    with os.fdopen(fd, "rb") as stream:
        data = stream.read() if limit is None else stream.read(limit + 1)
    if limit is not None and len(data) > limit:
        raise ValueError(f"{path.name} is larger than {limit} bytes")
    return data


def sha256_regular(path: Path, base: Path | None = None) -> tuple[str, int]:
    """(hex sha256, size) of a regular file's bytes, streamed (see `open_regular`)."""
    digest = hashlib.sha256()
    size = 0
    with os.fdopen(open_regular(path, base), "rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def hash_jobs() -> int:
    """Threads for hashing: the cores this process may use (hashlib and reads release the
    GIL, so threads hash in parallel; memory is jobs x CHUNK)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def sha256_many(
    paths: list[Path], base: Path | None = None, jobs: int | None = None
) -> list[tuple[str, int] | OSError]:
    """`sha256_regular` of each path, across cores, in the given order; a file that cannot
    be hashed gives its OSError (FileNotFoundError, NotRegularError…) in its place."""
    from concurrent.futures import ThreadPoolExecutor

    def one(path: Path) -> tuple[str, int] | OSError:
        try:
            return sha256_regular(path, base)
        except OSError as exc:
            return exc

    workers = min(jobs or hash_jobs(), max(1, len(paths)))
    if workers == 1:
        return [one(p) for p in paths]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sha256") as pool:
        return list(pool.map(one, paths))


def regular_problem(path: Path, label: str, base: Path | None = None) -> str | None:
    """`None` for a regular file, else one line naming what `label` is instead."""
    try:
        os.close(open_regular(path, base))
    except FileNotFoundError:
        return f"{label}: missing"
    except NotRegularError as exc:
        return f"{label}: {exc.kind}, not a regular file"
    except OSError as exc:
        return f"{label}: unreadable ({exc.strerror})"
    return None


def sha256_file(path: Path) -> str:
    """Hex sha256 of a regular file's bytes, streamed (links and FIFOs refused)."""
    return sha256_regular(path)[0]


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
