"""Benchmark: scrubbing a large text (a log saved as evidence) against `sha256sum`.

Every byte saved as evidence passes through `redact.clean` before it is hashed, so the
scrubber must keep up with the hashing. This generates a log of --mib MiB (ordinary lines,
a few secrets), then times, --runs times each (default 5): `sha256sum` of the file (the
baseline every evidence byte pays anyway), `redact.clean` as shipped (large texts searched
only around each pattern's trigger) and, with --full, the plain full scan (every pattern
over every byte, as before). Prints medians, MiB/s and the ratios to sha256sum. --chatty
puts a secret-ish word (`token`) on every fourth line: then the keyword patterns must scan
nearly everything (the worst case); by default such words are rare, as in most logs.

    .venv/bin/python tests/bench/bench_redact.py [--mib 32] [--runs 5] [--full]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from kfm_runbooks import redact

LINES = [
    "2026-12-03T00:00:12Z INFO GET /api/v1/items?bbox=-98.1,38.2,-97.9,38.4 200 12ms\n",
    "2026-12-03T00:00:13Z WARN slow query on catalog_items (812 ms): SELECT id FROM items\n",
    "2026-12-03T00:00:14Z INFO pipeline stage=validate dataset=kfm-hydrology ok=true\n",
    "2026-12-03T00:00:15Z DEBUG bucket refilled for client 10.0.0.7 (60 req/min)\n",
]
# --chatty: every fourth line names a secret-ish word (the scrubber's worst case)
CHATTY = "2026-12-03T00:00:15Z DEBUG token bucket refilled for client 10.0.0.7 (60 req/min)\n"
SECRET = "2026-12-03T00:00:16Z ERROR connect failed: postgres://kfm:" + "hunter2@db/kfm\n"


def make_log(mib: int, chatty: bool = False) -> bytes:
    lines = [*LINES[:3], CHATTY] if chatty else LINES
    out: list[str] = []
    size = 0
    index = 0
    while size < mib << 20:
        line = SECRET if index % 50_000 == 49_999 else lines[index % len(lines)]
        out.append(line)
        size += len(line)
        index += 1
    return "".join(out).encode()


def median_seconds(runs: int, action: object) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=32)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--full", action="store_true", help="also time the plain full scan")
    parser.add_argument("--chatty", action="store_true", help="a secret-ish word every 4 lines")
    args = parser.parse_args()
    data = make_log(args.mib, args.chatty)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "app.log"
        path.write_bytes(data)
        rows = [
            (
                "sha256sum",
                median_seconds(
                    args.runs, lambda: subprocess.run(["sha256sum", str(path)], check=True)
                ),
            )
        ]
    cleaned = redact.clean(data)
    assert b"hunter2" not in cleaned, "the benchmark's secrets must be found"
    rows.append(("redact.clean", median_seconds(args.runs, lambda: redact.clean(data))))
    if args.full:
        shipped = redact.WINDOWED_FROM
        redact.WINDOWED_FROM = len(data) + 1
        try:
            rows.append(("full scan", median_seconds(args.runs, lambda: redact.clean(data))))
        finally:
            redact.WINDOWED_FROM = shipped
    base = rows[0][1]
    kind = "chatty" if args.chatty else "quiet"
    print(f"{args.mib} MiB {kind} log, median of {args.runs} runs")
    for name, seconds in rows:
        rate = args.mib / seconds
        print(f"  {name:13} {seconds:8.3f} s  {rate:8.1f} MiB/s  x{seconds / base:6.1f} sha256sum")


if __name__ == "__main__":
    main()
