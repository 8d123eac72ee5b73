"""Hashing on a real Dask cluster (issue 16, item 2): a `dask scheduler` and two
`dask worker` processes on loopback, started and always stopped by the fixture."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from kfm_runbooks import connections, digest_memo, ledger
from kfm_runbooks._proc import die_with_parent
from kfm_runbooks.checks.catalog import health
from kfm_runbooks.checks.common import cluster
from kfm_runbooks.errors import TargetError
from kfm_runbooks.target import load_target

from .conftest import Cli

distributed = pytest.importorskip("distributed")
DASK = shutil.which("dask", path=str(Path(sys.executable).parent))
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(DASK is None, reason="the dask CLI is not installed (make venv)"),
]


@dataclass
class Cluster:
    address: str
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]]


def _start(argv: list[str], log: Path, **kwargs: object) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
            **kwargs,  # type: ignore[arg-type]
        )


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + 10
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_workers(address: str, count: int) -> None:
    with distributed.Client(address, timeout=30, set_as_default=False) as client:
        client.wait_for_workers(count, timeout=60)


def _cluster(tmp_path: Path, hide: Path | None = None) -> Iterator[Cluster]:
    """A scheduler and two workers; with `hide`, the workers run in their own mount
    namespace where an empty folder is mounted over that path (data they cannot see)."""
    assert DASK is not None
    log = tmp_path / "dask.log"
    sched_file = tmp_path / "scheduler.json"
    scheduler = _start(
        [
            DASK,
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(sched_file),
        ],
        log,
    )
    workers: list[subprocess.Popen[bytes]] = []
    try:
        deadline = time.monotonic() + 60
        while not sched_file.is_file() or not sched_file.read_text().strip():
            assert scheduler.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "the scheduler did not start"
            time.sleep(0.1)
        address = json.loads(sched_file.read_text())["address"]
        empty = tmp_path / "empty"
        empty.mkdir(exist_ok=True)
        for name in ("w1", "w2"):
            argv = [DASK, "worker", address, "--nthreads", "1", "--no-nanny", "--name", name]
            if hide is not None:
                script = f'mount --bind "{empty}" "{hide}" && exec "$@"'
                argv = ["unshare", "--mount", "sh", "-c", script, "sh", *argv]
            workers.append(_start(argv, log))
        _wait_for_workers(address, 2)
        yield Cluster(address, scheduler, workers)
    finally:
        _stop([*workers, scheduler])


@pytest.fixture
def dask_cluster(tmp_path: Path) -> Iterator[Cluster]:
    yield from _cluster(tmp_path)


def _with_executor(target: Path, address: str) -> Path:
    data = yaml.safe_load(target.read_text())
    data["executor"] = {"dask": address}
    out = target.with_name("dask.target.yaml")
    out.write_text(yaml.safe_dump(data))
    return out


def _verdicts(scan: health.CatalogScan) -> list[tuple[str, str, list[str]]]:
    return [(i.file, i.integrity, sorted(i.codes)) for i in scan.items]


def test_a_cluster_scan_gives_the_local_verdicts(dask_cluster: Cluster, sandbox: Path) -> None:
    digest_memo.forget_all()
    local = health.scan(health.CatalogConfig.from_target(load_target(sandbox)))
    connections.drain()
    config = health.CatalogConfig.from_target(
        load_target(_with_executor(sandbox, dask_cluster.address))
    )
    assert config.executor == dask_cluster.address
    remote = health.scan(config)
    assert _verdicts(remote) == _verdicts(local)
    assert remote.assets_examined == local.assets_examined > 0
    assert remote.assets_reused == 0  # hashed by the workers, not from this process's memo
    noted = [c for c in connections.drain()[0] if c["kind"] == "dask"]
    assert noted and noted[0]["workers"] == 2


def _big_catalog(folder: Path, items: int, mib: int) -> Path:
    import hashlib

    (folder / "items" / "assets").mkdir(parents=True)
    for index in range(items):
        data = os.urandom(mib << 20)
        name = f"a{index:03d}.bin"
        (folder / "items" / "assets" / name).write_bytes(data)
        item = {
            "type": "Feature",
            "stac_version": "1.0.0",
            "id": f"big-{index:03d}",
            "geometry": None,
            "links": [],
            "properties": {"datetime": "2026-01-01T00:00:00Z", "license": "CC-BY-4.0"},
            "assets": {
                "data": {
                    "href": f"./assets/{name}",
                    "type": "application/octet-stream",
                    "title": "data",
                    "roles": ["data"],
                    "file:size": len(data),
                    "file:checksum": "sha256:" + hashlib.sha256(data).hexdigest(),
                }
            },
        }
        (folder / "items" / f"i{index:03d}.json").write_text(json.dumps(item))
    target = folder / "big.target.yaml"
    target.write_text("name: big\ncatalog:\n  items: [items]\n  data_root: items\n")
    return target


def test_a_worker_killed_mid_scan_has_its_tasks_rerun(
    dask_cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = _with_executor(_big_catalog(tmp_path / "big", 24, 2), dask_cluster.address)
    config = health.CatalogConfig.from_target(load_target(target))
    calls = {"n": 0}
    original = cluster.DaskHasher.__call__

    def call(self: cluster.DaskHasher, path: Path, algorithm: str) -> tuple[str, bool]:
        calls["n"] += 1
        if calls["n"] == 6:  # mid-scan: one of the two workers dies for good
            os.kill(dask_cluster.workers[0].pid, signal.SIGKILL)
        return original(self, path, algorithm)

    monkeypatch.setattr(cluster.DaskHasher, "__call__", call)
    scan = health.scan(config)
    assert dask_cluster.workers[0].wait(timeout=30) is not None
    assert scan.assets_examined == scan.assets_in_scope == 24
    assert scan.assets_verified == 24
    assert not scan.with_codes(health.INTEGRITY_CODES | health.LINK_CODES)
    assert not [f for f in scan.findings if f.code == "CAT_ASSET_NOT_VERIFIED"]


def test_an_unreachable_scheduler_holds_every_asset(sandbox: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = health.CatalogConfig.from_target(
        load_target(_with_executor(sandbox, f"tcp://127.0.0.1:{port}"))
    )
    scan = health.scan(config)
    held = [f for f in scan.findings if f.code == "CAT_ASSET_NOT_VERIFIED"]
    assert held and all("unreachable" in f.message for f in held)
    assert scan.assets_examined == 0  # nothing hashed locally instead: never PASS
    assert {i.integrity for i in scan.items if i.assets_in_scope} <= {"HOLD", "FAIL"}


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare to give the workers their own mounts",
)
def test_workers_that_cannot_see_the_data_hold_naming_the_files(
    tmp_path: Path, sandbox: Path
) -> None:
    """The workers see an empty folder where the catalog is, as workers would where the
    shared filesystem is not mounted."""
    expected = config_assets(sandbox)
    (tmp_path / "cluster").mkdir()
    gen = _cluster(tmp_path / "cluster", hide=sandbox.parent / "catalog")
    running = next(gen)
    try:
        config = health.CatalogConfig.from_target(
            load_target(_with_executor(sandbox, running.address))
        )
        scan = health.scan(config)
    finally:
        gen.close()
    held = [f for f in scan.findings if f.code == "CAT_ASSET_NOT_VERIFIED"]
    assert held and scan.assets_examined == 0
    assert all("the workers cannot see" in f.message for f in held)
    assert len(held) == expected


def config_assets(target: Path) -> int:
    """Local assets with a usable checksum in the catalog (what a local scan examines)."""
    digest_memo.forget_all()
    return health.scan(health.CatalogConfig.from_target(load_target(target))).assets_examined


def test_executor_addresses_are_checked(tmp_path: Path) -> None:
    target = tmp_path / "t.yaml"
    target.write_text("name: t\n")
    loaded = load_target(target)
    with pytest.raises(TargetError, match="not a Dask address"):
        cluster.check_address("scheduler:8786", loaded)
    with pytest.raises(TargetError, match=r"remote\.allow"):
        cluster.check_address("tcp://dask.example.org:8786", loaded)
    assert cluster.check_address("local", loaded) is None


def test_a_run_on_the_cluster_records_its_executor(
    cli: Cli, incident: tuple[str, Path], dask_cluster: Cluster, tmp_path: Path
) -> None:
    incident_id, ws = incident
    clean = tmp_path / "clean"
    assert cli("sandbox", "create", str(clean), "--clean").exit_code == 0
    result = cli(
        "run",
        "RBK-catalog-checksum-mismatch",
        "--incident",
        incident_id,
        "--target",
        str(clean / "target.yaml"),
        "--executor",
        dask_cluster.address,
        "--json",
    )
    assert result.exit_code == 0, result.output
    run = [
        e for e in ledger.check(ws / "10_evidence" / "ledger.jsonl").entries if e["kind"] == "run"
    ][-1]["data"]
    assert run["executor"] == {"kind": "dask", "address": dask_cluster.address, "workers": 2}
    bad = cli(
        "run",
        "RBK-catalog-checksum-mismatch",
        "--incident",
        incident_id,
        "--target",
        str(clean / "target.yaml"),
        "--executor",
        "nonsense",
    )
    assert bad.exit_code == 2 and "not a Dask address" in bad.stderr
