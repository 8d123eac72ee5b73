"""`kfm-runbook sandbox up / down / status / fault`: the live sandbox's processes.

`up` starts, on loopback only, a private PostgreSQL + PostGIS cluster (postgres.py) and
the sandbox API server (api.py), and writes `<sandbox>/live/services.json` (pids, ports,
URLs, DSN) which runbooks read through the target. `down` stops everything `up` started
(API, any fault client, the database) and removes its runtime folders: nothing is left
running. `fault NAME --on/--off` switches a fault, including its effects outside the API
(the dropped index of `slow-query`, the flood client of `abusive-client`).

With live/infra.json present (sandbox part live_infra), `up` also mounts the sandbox's own
small data volume, has the API serve HTTPS on a second loopback port and runs the first
backup; `down` unmounts the data volume (infra.py).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from ..._fs import replace_atomic
from ..._proc import ProcessRef
from ..._time import now_iso
from ...errors import InputError, SetupError
from . import infra, postgres, target_render
from .faults import EXTERNAL, FAULTS, active, set_fault

GEOM_INDEX_SQL = (
    "CREATE INDEX IF NOT EXISTS observations_geom_idx ON observations USING gist (geom)"
)
ABUSER_CLIENT = "203.0.113.66"  # TEST-NET-3: a documentation address, never routed


def state_path(folder: Path) -> Path:
    return folder / "live" / "services.json"


def read_state(folder: Path) -> dict[str, Any] | None:
    try:
        value: dict[str, Any] = json.loads(state_path(folder).read_text())
        return value
    except (OSError, ValueError):
        return None


def _write_state(folder: Path, state: dict[str, Any]) -> None:
    replace_atomic(
        state_path(folder), (json.dumps(state, indent=2, sort_keys=True) + "\n").encode()
    )


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _spawn(argv: list[str], log: Path) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    out = (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    return os.posix_spawn(
        sys.executable,
        argv,
        dict(os.environ),
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            out,
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ],
        setsid=True,
    )


def _stop(pid: int | None, grace: float = 5.0) -> None:
    if not pid or not _alive(pid):
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    if _alive(pid):
        os.killpg(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.05)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - loopback URL we built
                return
        except urllib.error.HTTPError:
            return  # answering, even if degraded
        except OSError:
            time.sleep(0.1)
    raise SetupError(f"the sandbox API did not answer at {url} within {timeout:.0f}s")


def _check_sandbox(folder: Path) -> None:
    if not (folder / "live" / "config.json").is_file():
        raise InputError(
            f"{folder} is not a sandbox with a live side: create one with "
            "`kfm-runbook sandbox create DIR`"
        )


def _psql(state: dict[str, Any], sql: str) -> None:
    import psycopg

    with psycopg.connect(state["postgres"]["dsn"], autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)


def _apply_external(folder: Path, state: dict[str, Any], name: str, on: bool) -> None:
    if name in infra.FAULTS:
        infra.apply_fault(folder, state, name, on)
    if name == "slow-query":
        _psql(
            state,
            "DROP INDEX IF EXISTS observations_geom_idx" if on else GEOM_INDEX_SQL,
        )
    if name == "abusive-client":
        _stop(state.get("abuser", {}).get("pid"))
        state["abuser"] = {}
        if on:
            pid = _spawn(
                [
                    sys.executable,
                    "-m",
                    "kfm_runbooks.sandbox.services.abuser",
                    "--url",
                    state["api"]["url"],
                    "--client",
                    ABUSER_CLIENT,
                    "--seconds",
                    "600",
                ],
                folder / "live" / "logs" / "abuser.log",
            )
            state["abuser"] = {"pid": pid, "client": ABUSER_CLIENT}
        _write_state(folder, state)


def up(folder: Path, *, owner: int | None = None) -> dict[str, Any]:
    """Start the services (idempotent). With `owner` (a pid, e.g. the test process), a
    keeper brings them down when that process dies, however it dies (keeper.py)."""
    folder = folder.resolve()
    _check_sandbox(folder)
    current = read_state(folder)
    if current and _alive(current.get("api", {}).get("pid")):
        return current
    if current:  # left by an `up` that died half-way: stop what it recorded first
        down(folder)
    keeper = _keeper_argv(folder, owner)
    cluster = postgres.plan()
    state: dict[str, Any] = {
        "started": now_iso(),
        "api": {},
        "postgres": {
            "folder": str(cluster.folder),
            "port": cluster.port,
            "dsn": cluster.dsn,
            "bin_dir": str(cluster.bin_dir),
        },
        "abuser": {},
    }
    # Recorded before anything starts, so `down` (or the keeper) can always stop it all.
    _write_state(folder, state)
    try:
        if keeper is not None:  # from here on, a dead owner means `down`
            state["keeper"] = {"pid": _spawn(keeper, folder / "live" / "logs" / "keeper.log")}
            _write_state(folder, state)
        postgres.start(cluster)
        extras = infra.prepare(folder)  # data volume, TLS material ({} without infra.json)
        port = _free_port()
        pid = _spawn(
            [
                sys.executable,
                "-m",
                "kfm_runbooks.sandbox.services.api",
                "--folder",
                str(folder),
                "--port",
                str(port),
                "--dsn",
                cluster.dsn,
                *infra.api_args(extras),
            ],
            folder / "live" / "logs" / "api.log",
        )
        url = f"http://127.0.0.1:{port}"
        state.update({"api": {"pid": pid, "port": port, "url": url}, **extras})
        _write_state(folder, state)
        _wait_http(f"{url}/health", 30)
        target_render.render(folder, state)  # the target now names the real URLs
        infra.started(folder, state)  # the first backup
        _write_state(folder, state)
        for name in sorted(active(folder) & EXTERNAL):
            _apply_external(folder, state, name, True)
        return state
    except BaseException:
        down(folder)
        postgres.stop(cluster)
        raise


def _keeper_argv(folder: Path, owner: int | None) -> list[str] | None:
    if owner is None:
        return None
    ref = ProcessRef.of(owner)
    if ref is None:
        raise InputError(f"owner process {owner} does not exist: pass a running pid")
    return [
        sys.executable,
        "-m",
        "kfm_runbooks.sandbox.services.keeper",
        "--owner",
        str(ref),
        "--folder",
        str(folder),
    ]


def down(folder: Path) -> list[str]:
    """Stop everything `up` started; returns what was stopped."""
    folder = folder.resolve()
    state = read_state(folder)
    stopped: list[str] = []
    if state is None:
        infra.teardown(folder)  # a data volume left mounted by a crashed `up`
        return stopped
    if state.get("abuser", {}).get("pid"):
        _stop(state["abuser"]["pid"])
        stopped.append("fault client")
    if state.get("api", {}).get("pid"):
        _stop(state["api"]["pid"])
        stopped.append(f"API (port {state['api']['port']})")
    if state.get("postgres", {}).get("folder"):
        pg = state["postgres"]
        postgres.stop(postgres.Cluster(Path(pg["folder"]), int(pg["port"]), Path(pg["bin_dir"])))
        stopped.append(f"PostgreSQL (port {pg['port']})")
    infra.teardown(folder)  # unmount the data volume, remove its mount point
    state_path(folder).unlink(missing_ok=True)
    keeper = state.get("keeper", {}).get("pid")
    deadline = time.monotonic() + 5  # it leaves once services.json is gone; reap it
    while _alive(keeper) and time.monotonic() < deadline:
        time.sleep(0.05)
    return stopped


def status(folder: Path) -> dict[str, Any]:
    folder = folder.resolve()
    state = read_state(folder) or {}
    return {
        "up": bool(state) and _alive(state.get("api", {}).get("pid")),
        "api": state.get("api"),
        "postgres": {k: v for k, v in state.get("postgres", {}).items() if k != "bin_dir"},
        "tls": state.get("tls"),
        "data_volume": state.get("data_volume"),
        "faults": sorted(active(folder)),
    }


def fault(folder: Path, name: str, on: bool) -> set[str]:
    folder = folder.resolve()
    _check_sandbox(folder)
    if name not in FAULTS:
        raise InputError(f"unknown fault {name!r}: one of {', '.join(sorted(FAULTS))}")
    now = set_fault(folder, name, on)
    state = read_state(folder)
    if state and _alive(state.get("api", {}).get("pid")):
        try:
            _apply_external(folder, state, name, on)
        except SetupError:
            if on and name in infra.FAULTS:  # refused (e.g. no own volume): not switched on
                now = set_fault(folder, name, False)
            raise
    return now
