"""The stock PostgreSQL fixture itself: what it promises other stock tests."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.stock import postgres as stock

pytestmark = pytest.mark.slow


def test_a_stock_cluster_has_the_points_without_their_gist_index_and_is_gone_after_stop() -> None:
    cluster = stock.start()
    try:
        rows = cluster.sql(f"SELECT count(*) FROM {stock.TABLE}")
        indexes = cluster.sql(
            "SELECT indexname FROM pg_indexes WHERE tablename = %s", (stock.TABLE,)
        )
        preload = cluster.sql("SHOW shared_preload_libraries")
        cluster.workload(6)
        ranked = cluster.sql(
            "SELECT calls, query FROM pg_stat_statements WHERE query LIKE %s",
            ("%ST_MakeEnvelope%",),
        )
        assert rows == [(stock.ROWS,)]
        assert [i for (i,) in indexes] == ["points_pkey"]  # no GiST index
        assert "pg_stat_statements" in preload[0][0]
        assert ranked and ranked[0][0] == 6 and "$1" in ranked[0][1]  # parameters, normalized
        cluster.create_gist_index()
        assert stock.GIST_INDEX in [
            i
            for (i,) in cluster.sql(
                "SELECT indexname FROM pg_indexes WHERE tablename = %s", (stock.TABLE,)
            )
        ]
    finally:
        stock.stop(cluster)
    assert cluster.process is not None and cluster.process.poll() is not None
    assert not cluster.folder.exists()
    stock.stop(cluster)  # twice: nothing to do


def test_the_server_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    """A killed test runner leaves no PostgreSQL behind (parent-death signal)."""
    script = tmp_path / "owner.py"
    script.write_text(
        "import sys, time\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from tests.stock import postgres as stock\n"
        "cluster = stock.start()\n"
        "print(cluster.process.pid, cluster.folder, flush=True)\n"
        "time.sleep(600)\n"
    )
    root = Path(__file__).resolve().parents[1]
    owner = subprocess.Popen(
        [sys.executable, str(script), str(root)], stdout=subprocess.PIPE, text=True
    )
    folder = None
    try:
        assert owner.stdout is not None
        pid_text, folder_text = owner.stdout.readline().split()
        pid, folder = int(pid_text), Path(folder_text)
        assert Path(f"/proc/{pid}").exists()
        owner.kill()
        owner.wait(timeout=30)
        for _ in range(300):  # bounded wait for the kernel's signal, not a timing assertion
            if not Path(f"/proc/{pid}").exists() or _zombie(pid):
                break
            time.sleep(0.1)
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid)
    finally:
        owner.kill()
        owner.wait(timeout=30)
        if owner.stdout is not None:
            owner.stdout.close()
        if folder is not None:
            subprocess.run(["rm", "-rf", str(folder)], check=False)


def _zombie(pid: int) -> bool:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return raw[raw.rfind(")") + 2 :].split()[0] in ("Z", "X")
