"""Bounded reads of regular files, for checks that read data nobody here wrote.

One way to open a file a check judges: `os.open` with O_NOFOLLOW (a symlink swapped in
is refused, never followed) and O_NONBLOCK (a FIFO cannot hang the open), then `fstat`
must say S_ISREG, then at most `limit + 1` bytes are read (a file that grows past the
limit while read is refused too). Built on the core `_fs.open_regular`.

`read_regular` raises `FileProblemError`; `read_bounded` returns the problem kind instead,
which each domain maps to its own finding code (CAT_FILE_TOO_LARGE, SEC_FILE_TOO_LARGE...).
"""

from __future__ import annotations

import errno
import os
from enum import StrEnum
from pathlib import Path

from ..._fs import NotRegularError, open_regular, sha256_regular


class FileProblem(StrEnum):
    """Why a file was not read."""

    MISSING = "missing"
    LINK = "link"  # a symbolic link: refused, never followed
    NOT_REGULAR = "not_regular"  # a FIFO, socket, device or folder
    TOO_LARGE = "too_large"
    UNREADABLE = "unreadable"


class FileProblemError(OSError):
    """A file a check will not read, with the kind of problem and a one-line reason."""

    def __init__(self, path: Path, problem: FileProblem, reason: str) -> None:
        super().__init__(errno.EINVAL, reason, str(path))
        self.path = path
        self.problem = problem
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class MissingFileError(FileProblemError, FileNotFoundError):
    """No such file: still a `FileNotFoundError`, so "absent means default" keeps working."""


def read_regular(path: Path, limit: int) -> bytes:
    """All bytes of the regular file `path` (links, FIFOs, devices refused; <= `limit`)."""
    try:
        fd = open_regular(path)
    except FileNotFoundError as exc:
        raise MissingFileError(path, FileProblem.MISSING, "no such file") from exc
    except NotRegularError as exc:
        kind = FileProblem.LINK if exc.kind == "a symbolic link" else FileProblem.NOT_REGULAR
        raise FileProblemError(path, kind, f"{exc.kind}, not a regular file: refused") from exc
    except OSError as exc:
        raise FileProblemError(path, FileProblem.UNREADABLE, exc.strerror or str(exc)) from exc
    try:
        with os.fdopen(fd, "rb") as stream:
            if os.fstat(stream.fileno()).st_size > limit:
                data = b""
                oversize = True
            else:
                data = stream.read(limit + 1)
                oversize = len(data) > limit
    except OSError as exc:
        raise FileProblemError(path, FileProblem.UNREADABLE, exc.strerror or str(exc)) from exc
    if oversize:
        raise FileProblemError(
            path,
            FileProblem.TOO_LARGE,
            f"larger than the {limit}-byte limit: refused unread (split the file or raise "
            "the limit the check documents)",
        )
    return data


def read_bounded(path: Path, limit: int) -> tuple[bytes | None, FileProblem | None]:
    """(bytes, None) or (None, problem): `read_regular` that never raises."""
    try:
        return read_regular(path, limit), None
    except FileProblemError as exc:
        return None, exc.problem


def sha256_tagged(path: Path) -> str:
    """``sha256:<hex>`` of a regular file (the form KFM manifests and pins carry)."""
    return "sha256:" + sha256_file(path)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a regular file's bytes, streamed (links and FIFOs refused: OSError)."""
    return sha256_regular(path)[0]
