"""Put a hostile file where a check expects a small regular one (shared by the domain tests).

`symlink`: the expected content lives elsewhere and a link points at it (a link swapped in
must be refused, never followed). `oversize`: a sparse file past `size` bytes (refused
unread: costs no disk). `fifo`: a named pipe (must neither block nor be read).
"""

from __future__ import annotations

import os
from pathlib import Path

KINDS = ("symlink", "oversize", "fifo")


def plant(path: Path, kind: str, content: bytes, size: int) -> None:
    """Replace `path` by a hostile `kind` of file whose honest content would be `content`."""
    if os.path.lexists(path):
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "symlink":
        elsewhere = path.parent / f".elsewhere-{path.name}"
        elsewhere.write_bytes(content)
        path.symlink_to(elsewhere)
    elif kind == "oversize":
        with path.open("wb") as stream:
            stream.write(content)
            stream.truncate(size + 1)
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        raise ValueError(kind)
