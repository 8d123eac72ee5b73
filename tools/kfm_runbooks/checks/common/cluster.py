"""Hashing on a Dask cluster, for data bigger than one machine reads in time.

A target may name an executor, or `kfm-runbook run --executor` may (it wins):

    executor: {dask: tcp://scheduler.internal:8786}

Then the catalog scan's hashing runs on that existing Dask distributed cluster (the
`distributed` package, no home-made scheduler): one task per file, submitted as the scan
reaches it, results streamed back; the kernel, the verdicts and all evidence stay on the
operator's machine. Workers read the data where it lives: the path the target names must
be the same path on every worker (a shared filesystem mounted alike). A task whose worker
dies is re-run by Dask on another worker; a file the cluster still cannot hash (a worker
that cannot see the path, a task that keeps killing workers) is **not** hashed locally
instead — the point of a cluster is that one machine cannot — and the scan reports it
`CAT_ASSET_NOT_VERIFIED` (HOLD, naming the file and why): coverage is incomplete, never
PASS. An unreachable scheduler or a Dask version mismatch between this client and the
cluster holds every file the same way, with one line saying so.

A sha256 cannot be split by byte range (each block's state depends on the bytes before
it), so a very large file is one task: it uses one worker core, at that worker's reading
speed. Hosts other than loopback must be listed in the target's `remote.allow`.
"""

from __future__ import annotations

import os
import threading
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ... import connections
from ...errors import TargetError
from ...target import Target

EXECUTOR_ENV = "KFM_EXECUTOR"  # set by `kfm-runbook run --executor ADDRESS`
CONNECT_TIMEOUT_S = 15
TASK_RETRIES = 2  # on top of Dask's own rescheduling of tasks lost with a worker
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class NotVerifiedError(Exception):
    """The cluster could not hash a file; the reason names what went wrong."""


def hash_file(path: str, algorithm: str) -> tuple[str, int]:
    """Runs on a worker: (digest, size) of a file, streamed in 1 MiB reads."""
    import hashlib

    digest = hashlib.new(algorithm)
    size = 0
    with open(path, "rb") as stream:  # noqa: PTH123 - runs on a worker, plain and small
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def address_of(target: Target) -> str | None:
    """The executor's scheduler address (None: hash locally), checked."""
    given = os.environ.get(EXECUTOR_ENV, "").strip()
    if not given:
        section = target.data.get("executor")
        if section is None:
            return None
        if not isinstance(section, dict) or not isinstance(section.get("dask"), str):
            raise TargetError(f"target {target.path}: executor must be {{dask: tcp://host:port}}")
        given = section["dask"].strip()
    return check_address(given, target)


def check_address(given: str, target: Target) -> str | None:
    """A Dask scheduler address a run may use (None for 'local'); TargetError otherwise."""
    if given in ("", "local"):
        return None
    parts = urllib.parse.urlsplit(given)
    if parts.scheme not in ("tcp", "tls") or not parts.hostname or not parts.port:
        raise TargetError(f"executor {given!r} is not a Dask address: use tcp://host:port")
    allowed = target.data.get("remote") or {}
    hosts = (
        {str(h).lower() for h in (allowed.get("allow") or [])}
        if isinstance(allowed, dict)
        else set()
    )
    if parts.hostname.lower() not in LOOPBACK | hosts:
        raise TargetError(
            f"executor host {parts.hostname} is not loopback and not in the target's "
            "remote.allow list: add it there to use that cluster"
        )
    return given


@dataclass
class DaskHasher:
    """Submits one hashing task per file to a Dask cluster and waits for its answer."""

    address: str
    client: Any = None
    problem: str = ""  # why the cluster cannot be used (then every file is not verified)
    info: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def connect(self) -> DaskHasher:
        try:
            from distributed import Client
        except ImportError:
            self.problem = "the distributed package is not installed (pip install distributed)"
            return self
        try:
            self.client = Client(  # type: ignore[no-untyped-call]
                self.address, timeout=CONNECT_TIMEOUT_S, set_as_default=False
            )
            versions = self.client.get_versions(check=False)
        except (OSError, TimeoutError) as exc:
            self.problem = f"Dask scheduler {self.address} unreachable ({type(exc).__name__})"
            connections.note("dask", self.address, error=type(exc).__name__)
            return self
        mismatch = _version_mismatch(versions)
        if mismatch:
            self.problem = f"Dask version mismatch with the cluster: {mismatch}"
        workers = self.client.scheduler_info().get("workers", {})
        self.info = {
            "kind": "dask",
            "address": self.address,
            "workers": len(workers),
            "threads": sum(int(w.get("nthreads", 0)) for w in workers.values()),
        }
        connections.note("dask", self.address, status="connected", workers=len(workers))
        return self

    @property
    def parallelism(self) -> int:
        """Tasks to keep in flight: every worker thread busy, plus a queue."""
        return max(2, 2 * int(self.info.get("threads") or 1))

    def __call__(self, path: Path, algorithm: str) -> tuple[str, bool]:
        if self.problem:
            raise NotVerifiedError(self.problem)
        assert self.client is not None
        future = self.client.submit(
            hash_file, str(path), algorithm, pure=False, retries=TASK_RETRIES
        )
        try:
            digest, size = future.result()
        except FileNotFoundError as exc:
            raise NotVerifiedError(f"the workers cannot see {path} ({exc.strerror})") from exc
        except PermissionError as exc:
            raise NotVerifiedError(f"the workers may not read {path} ({exc.strerror})") from exc
        except Exception as exc:  # KilledWorker, CancelledError, OSError on the worker
            raise NotVerifiedError(
                f"the cluster could not hash {path}: {type(exc).__name__}"
            ) from exc
        if size != path.stat().st_size:
            raise NotVerifiedError(
                f"{path}: the workers read {size} bytes, here it has another size"
            )
        return digest, False

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


def _version_mismatch(versions: dict[str, Any]) -> str:
    """'' when client, scheduler and workers run the same dask / distributed / Python."""

    def key(entry: dict[str, Any]) -> tuple[str, str, str]:
        packages = entry.get("packages", {})
        return (
            str(packages.get("dask")),
            str(packages.get("distributed")),
            str(packages.get("python", ""))[:4],
        )

    mine = key(versions.get("client", {}))
    others = [("scheduler", key(versions.get("scheduler", {})))]
    others += [(str(w), key(v)) for w, v in (versions.get("workers") or {}).items()]
    bad = [f"{name} has dask/distributed/python {v}" for name, v in others if v != mine]
    return f"this client has {mine}; " + "; ".join(bad[:2]) if bad else ""
