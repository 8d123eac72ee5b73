"""A stock PostgreSQL + PostGIS cluster, `initdb`'d for the test module (not the sandbox's).

`start()` initialises a fresh cluster in its own folder, preloads `pg_stat_statements`,
listens on 127.0.0.1 (a free port, no Unix socket) and loads one spatial table, `points`:
50 000 deterministic points **without** the GiST index a spatial search needs
(`GIST_INDEX` names it; `create_gist_index` / `drop_gist_index` switch it). The server runs
in the foreground as a child of the test process with a parent-death signal (`setpriv
--pdeathsig` when we are root and it runs as `postgres`, `kfm_runbooks._proc.guarded`
otherwise): a killed pytest leaves no PostgreSQL behind; `stop()` (and the module fixture)
shuts it down and removes the folder in every case.

Reuse: `from tests.stock.postgres import stock_postgres` (module fixture) or `start()` /
`stop()` directly. `Cluster.dsn`, `.bin_dir` (pg_dump, pg_restore, psql) and `.sql()` are
what other stock tests need.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kfm_runbooks._proc import guarded

DATABASE = "gis"
USER = "stock"
TABLE = "points"
ROWS = 50_000
GIST_INDEX = "points_geom_gist"
# The statement an application would send for a bounding-box search (psycopg binds the
# parameters server-side, so pg_stat_statements ranks it with $1..$4).
BBOX_SQL = (
    "SELECT count(*), coalesce(max(name), '') FROM points "
    "WHERE geom && ST_MakeEnvelope(%s, %s, %s, %s, 4326)"
)
SCHEMA_SQL = f"""
CREATE EXTENSION postgis;
CREATE EXTENSION pg_stat_statements;
CREATE TABLE {TABLE} (
  id bigint PRIMARY KEY,
  name text NOT NULL,
  recorded_at timestamptz NOT NULL,
  geom geometry(Point, 4326) NOT NULL
);
INSERT INTO {TABLE}
SELECT n, 'point ' || n,
       timestamptz '2026-01-01 00:00:00+00' + (n % 720) * interval '1 hour',
       ST_SetSRID(ST_MakePoint(-102.0 + ((n * 37) % 7000) / 1000.0,
                               37.0 + ((n * 91) % 3000) / 1000.0), 4326)
FROM generate_series(1, {ROWS}) AS n;
ANALYZE {TABLE};
"""


def bin_dir() -> Path:
    """The newest installed PostgreSQL's binaries (Debian layout), else PATH."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), reverse=True)
    if found:
        return found[0].parent
    postgres = shutil.which("postgres")
    if postgres is None:
        pytest.skip("PostgreSQL is not installed (Debian: postgresql, postgresql-*-postgis-3)")
    return Path(postgres).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_owner(argv: list[str], *, pdeathsig: bool = False) -> list[str]:
    """PostgreSQL refuses root: run as `postgres` then (setpriv execs, no extra process)."""
    if os.geteuid() != 0:
        return guarded(argv) if pdeathsig else argv
    death = ["--pdeathsig", "KILL"] if pdeathsig else []
    return [
        "setpriv",
        "--reuid=postgres",
        "--regid=postgres",
        "--init-groups",
        *death,
        "--",
        *argv,
    ]


@dataclass
class Cluster:
    folder: Path
    port: int
    bin_dir: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} dbname={DATABASE} user={USER}"

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def log(self) -> Path:
        return self.folder / "server.log"

    def connect(self, **kwargs: Any) -> Any:
        import psycopg

        return psycopg.connect(self.dsn, connect_timeout=10, autocommit=True, **kwargs)

    def sql(self, statement: str, params: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
        """Run one statement (autocommit); rows when it returns any."""
        with self.connect() as conn:
            cursor = conn.execute(statement, params)  # type: ignore[arg-type]
            return list(cursor.fetchall()) if cursor.description else []

    # -- the state a test sets up ---------------------------------------------------------

    def create_gist_index(self) -> None:
        self.sql(f"CREATE INDEX IF NOT EXISTS {GIST_INDEX} ON {TABLE} USING gist (geom)")
        self.sql(f"ANALYZE {TABLE}")

    def drop_gist_index(self) -> None:
        self.sql(f"DROP INDEX IF EXISTS {GIST_INDEX}")

    def reset_statistics(self) -> None:
        self.sql("SELECT pg_stat_statements_reset()")

    def workload(self, calls: int = 12) -> None:
        """What an application does: bbox searches over different areas."""
        with self.connect() as conn:
            for n in range(calls):
                x, y = -101.5 + (n % 5) * 0.4, 37.5 + (n % 3) * 0.4
                conn.execute(BBOX_SQL, (x, y, x + 0.3, y + 0.3))


def _run(argv: list[str], what: str, timeout: float = 120) -> None:
    result = subprocess.run(_as_owner(argv), capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"stock PostgreSQL {what} failed: {' | '.join(tail)}")


def _wait_ready(cluster: Cluster, timeout: float = 60) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        if cluster.process is not None and cluster.process.poll() is not None:
            raise RuntimeError(f"stock PostgreSQL exited: {_tail(cluster.log)}")
        try:
            with psycopg.connect(
                f"host=127.0.0.1 port={cluster.port} dbname=postgres user={USER}",
                connect_timeout=2,
            ):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"stock PostgreSQL did not start: {_tail(cluster.log)}"
                ) from None
            time.sleep(0.2)


def _tail(path: Path) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-3:])
    except OSError:
        return "no server log"


def start() -> Cluster:
    """initdb, start, load: a running cluster (stop it with `stop`, whatever happens)."""
    binaries = bin_dir()
    folder = Path(tempfile.mkdtemp(prefix="kfm-stock-pg-"))
    folder.chmod(0o700)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    cluster = Cluster(folder, _free_port(), binaries)
    try:
        _run(
            [
                str(binaries / "initdb"),
                "-D",
                str(cluster.data),
                "-U",
                USER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
            "initdb",
        )
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(cluster.port),
            "unix_socket_directories": "",
            "shared_preload_libraries": "pg_stat_statements",
            "pg_stat_statements.track": "top",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "30",
        }
        argv = [str(binaries / "postgres"), "-D", str(cluster.data)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        log = cluster.log.open("ab")
        try:
            cluster.process = subprocess.Popen(
                _as_owner(argv, pdeathsig=True), stdout=log, stderr=subprocess.STDOUT
            )
        finally:
            log.close()
        _wait_ready(cluster)
        with contextlib.closing(_admin_connection(cluster)) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
        cluster.sql(SCHEMA_SQL)
        return cluster
    except BaseException:
        stop(cluster)
        raise


def _admin_connection(cluster: Cluster) -> Any:
    import psycopg

    return psycopg.connect(
        f"host=127.0.0.1 port={cluster.port} dbname=postgres user={USER}",
        connect_timeout=10,
        autocommit=True,
    )


def stop(cluster: Cluster) -> None:
    """Fast shutdown (SIGINT), SIGKILL if it lingers; the folder is removed. Idempotent."""
    process = cluster.process
    if process is not None and process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
    shutil.rmtree(cluster.folder, ignore_errors=True)


@pytest.fixture(scope="module")
def stock_postgres() -> Iterator[Cluster]:
    """One stock cluster per test module: 50k points in `points`, no GiST index."""
    cluster = start()
    try:
        yield cluster
    finally:
        stop(cluster)
