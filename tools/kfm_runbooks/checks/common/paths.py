"""Path containment and display paths for checks (the repository root: `kfm_runbooks.paths`).

`inside` is the containment check for files a check is about to read or write: the
folders are resolved (a linked folder counts where it leads), the last component is not
followed (a symlink *is* the entry, and the readers refuse it). `lexically_inside` is
for names that may not exist yet (skip lists, write areas): no filesystem access, `..`
collapsed first. `rel` is the stable display form findings carry.
"""

from __future__ import annotations

import os
from pathlib import Path


def inside(path: Path, base: Path) -> bool:
    """Is `path` (its folders resolved, its last component not followed) inside `base`?"""
    try:
        path.parent.resolve().joinpath(path.name).relative_to(base.resolve())
    except (OSError, ValueError, RuntimeError):
        return False
    return True


def lexically_inside(path: Path | str, base: Path | str) -> bool:
    """Inside `base` by name alone (no filesystem access; `..` collapsed first)."""
    candidate = os.path.normpath(path)
    boundary = os.path.normpath(base)
    return candidate == boundary or candidate.startswith(boundary.rstrip(os.sep) + os.sep)


def rel(path: Path, base: Path) -> str:
    """`path` relative to `base` (posix, `..` collapsed), or its bare name when elsewhere."""
    try:
        return Path(os.path.normpath(path)).relative_to(os.path.normpath(base)).as_posix()
    except ValueError:
        return path.name
