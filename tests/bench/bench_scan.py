"""Benchmark: the catalog scan's hashing against hashlib's all-core limit and coreutils.

Generates a STAC catalog of --items items, each with one --mib-per-item MiB asset and a
valid descriptor (`file:checksum` sha256, `file:size`), then times, --runs times each in
one sitting (default 5), median seconds and ratios:

- hashlib on every core (threads, 1 MiB reads, nothing else): the machine's limit;
- `xargs -0 -P<cores> sha256sum` over the asset files;
- `health.scan(config)` (RBK-catalog-checksum-mismatch's scan: parse, contain, hash,
  compare), with the digest memo cleared before each run (a cold scan);
- the same scan a second time in the same process (verification after triage with no
  action in between): every digest reused, no byte read again.

    .venv/bin/python tests/bench/bench_scan.py [--items 256] [--mib-per-item 4] [--runs 5]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kfm_runbooks import digest_memo
from kfm_runbooks._fs import hash_jobs
from kfm_runbooks.checks.catalog import health
from kfm_runbooks.target import load_target


def median(runs: int, action: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def build(folder: Path, items: int, mib: int) -> tuple[Path, list[Path]]:
    (folder / "items" / "assets").mkdir(parents=True)
    assets = []
    for index in range(items):
        data = os.urandom(mib << 20)
        asset = folder / "items" / "assets" / f"a{index:05d}.bin"
        asset.write_bytes(data)
        assets.append(asset)
        item = {
            "type": "Feature",
            "stac_version": "1.0.0",
            "id": f"bench-{index:05d}",
            "geometry": None,
            "properties": {"datetime": "2026-01-01T00:00:00Z", "license": "CC-BY-4.0"},
            "links": [],
            "assets": {
                "data": {
                    "href": f"./assets/{asset.name}",
                    "type": "application/octet-stream",
                    "title": "data",
                    "roles": ["data"],
                    "file:checksum": "sha256:" + hashlib.sha256(data).hexdigest(),
                    "file:size": len(data),
                }
            },
        }
        (folder / "items" / f"i{index:05d}.json").write_text(json.dumps(item))
    target = folder / "bench.target.yaml"
    target.write_text("name: bench\ncatalog:\n  items: [items]\n  data_root: items\n")
    return target, assets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=256)
    parser.add_argument("--mib-per-item", type=int, default=4)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    cores = hash_jobs()
    with tempfile.TemporaryDirectory(prefix="kfm-bench-scan-") as tmp:
        target, assets = build(Path(tmp), args.items, args.mib_per_item)
        config = health.CatalogConfig.from_target(load_target(target))

        def limit() -> None:
            def one(path: Path) -> str:
                digest = hashlib.sha256()
                with path.open("rb") as stream:
                    for chunk in iter(lambda: stream.read(1 << 20), b""):
                        digest.update(chunk)
                return digest.hexdigest()

            with ThreadPoolExecutor(max_workers=cores) as pool:
                list(pool.map(one, assets))

        def coreutils() -> None:
            subprocess.run(
                ["xargs", "-0", f"-P{cores}", "-n8", "sha256sum"],
                input="\0".join(str(a) for a in assets).encode(),
                check=True,
                capture_output=True,
            )

        def cold_scan() -> None:
            digest_memo.forget_all()
            result = health.scan(config)
            assert result.assets_verified == args.items, result.findings[:3]

        def warm_scan() -> None:
            result = health.scan(config)
            assert result.assets_reused == args.items

        limit()  # page cache warm: every contender reads from memory
        base = median(args.runs, limit)
        rows = [
            (f"hashlib, {cores} thread(s) (limit)", base),
            (f"xargs -P{cores} sha256sum", median(args.runs, coreutils)),
            ("catalog scan (cold)", median(args.runs, cold_scan)),
        ]
        cold_scan()
        rows.append(("catalog scan again (verification)", median(args.runs, warm_scan)))
        gib = args.items * args.mib_per_item / 1024
        print(
            f"{args.items} items x {args.mib_per_item} MiB = {gib:.2f} GiB, {cores} core(s), "
            f"median of {args.runs}"
        )
        print(f"{'contender':<36}{'seconds':>9}{'GiB/s':>8}{'vs limit':>10}")
        for name, seconds in rows:
            print(f"{name:<36}{seconds:>9.3f}{gib / seconds:>8.2f}{seconds / base:>9.2f}x")
        xargs = rows[1][1]
        print(f"cold scan vs xargs sha256sum: {xargs / rows[2][1]:.2f}x faster")


if __name__ == "__main__":
    main()
