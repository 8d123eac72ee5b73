"""Digests a run already computed, reused only for files provably unchanged since.

A read-only runbook scans twice (triage, then verification): hashing every byte twice
doubles its time on terabytes. A digest is remembered with the file's identity and state
when it was hashed — (device, inode, size, mtime_ns, ctime_ns), taken before and after
reading and remembered only when both agree — and reused only when the file's state now
is the same; any change to the file (a write moves mtime and ctime; a rename or
replacement changes the inode) makes it hash again. Any applied action forgets them all
(`record.Recorder.action` calls `forget_all`): after a change nothing is assumed.

The memo lives in one process (the run's kernel) and is never written anywhere.
Standard library only.
"""

from __future__ import annotations

import os
import threading

StatKey = tuple[int, int, int, int, int]

_lock = threading.Lock()
_memo: dict[tuple[str, str], tuple[StatKey, str]] = {}


def stat_key(info: os.stat_result) -> StatKey:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def lookup(path: str, algorithm: str, key: StatKey) -> str | None:
    with _lock:
        found = _memo.get((path, algorithm))
    return found[1] if found is not None and found[0] == key else None


def remember(path: str, algorithm: str, before: StatKey, after: StatKey, digest: str) -> None:
    if before != after:  # changed while it was read: its digest proves nothing
        return
    with _lock:
        _memo[(path, algorithm)] = (before, digest)


def forget_all() -> int:
    with _lock:
        count = len(_memo)
        _memo.clear()
    return count
