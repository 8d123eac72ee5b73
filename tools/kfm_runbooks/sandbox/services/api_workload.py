"""The sandbox's database workload: what its API has already run when an incident starts.

A production database has a history in pg_stat_statements; a freshly started sandbox has
none, and a slow-queries runbook (which judges the statements the database actually ran)
would find nothing to rank. `warm_up` runs the API's own bbox search a few times, with the
same text and server-side parameters as the API (services/api.py), right after the
cluster starts: pg_stat_statements then ranks it as it would after real traffic.
"""

from __future__ import annotations

SEARCH_SQL = (
    "SELECT count(*), coalesce(avg(value), 0) FROM observations "
    "WHERE ST_Intersects(geom, ST_MakeEnvelope(%s, %s, %s, %s, 4326))"
)
BOXES = [(-101.0 + 0.25 * (n % 4), 38.0 - 0.25 * (n % 3)) for n in range(8)]


def warm_up(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        for x, y in BOXES:
            conn.execute(SEARCH_SQL, (x, y, x + 0.5, y + 0.5))
