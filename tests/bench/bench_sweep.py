"""Benchmark: `kfm-runbook sweep` against the same runbooks run one after another.

On a fresh faulty sandbox (files only: no services), times --runs times each in one
sitting (default 3; every sitting a new incident), median seconds:

- sequential: `kfm-runbook run RBK-… --incident INC --target T` for each runbook of the
  selected domains, one after another (what an operator does by hand);
- `kfm-runbook sweep --incident INC --target T --domain … --jobs <cores>`.

Also prints peak RSS of hashing one --rss-gib GiB file with the project's streaming hasher
(`_fs.sha256_many`, as verify does), measured by `/usr/bin/time -v` when present, else by
`resource.getrusage` of a child process.

    .venv/bin/python tests/bench/bench_sweep.py [--domain catalog --domain graph ...] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kfm_runbooks import runbook
from kfm_runbooks._fs import hash_jobs

CLI = [sys.executable, "-m", "kfm_runbooks"]


def _run(argv: list[str], env: dict[str, str]) -> None:
    subprocess.run(argv, env=env, capture_output=True, check=False)


def _incident(env: dict[str, str]) -> str:
    out = subprocess.run(
        [*CLI, "incident", "new", "--title", "bench sweep", "--severity", "Sev3"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def peak_rss_mib(gib: int, folder: Path) -> float:
    big = folder / "big.bin"
    with big.open("wb") as out:
        block = os.urandom(1 << 20)
        for _ in range(gib << 10):
            out.write(block)
    code = (
        "import sys; from pathlib import Path; from kfm_runbooks._fs import sha256_many; "
        f"print(sha256_many([Path({str(big)!r})])[0])"
    )
    timer = shutil.which("time", path="/usr/bin")
    if timer:
        done = subprocess.run(
            [timer, "-v", sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
        if found:
            return int(found.group(1)) / 1024
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", action="append", default=None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rss-gib", type=int, default=4)
    args = parser.parse_args()
    domains = args.domain or ["catalog", "graph", "pipelines", "security"]
    ids = sorted(
        book.id
        for book in (runbook.load(p) for p in runbook.discover())
        if book.id.split("-")[1] in domains
    )
    cores = hash_jobs()
    with tempfile.TemporaryDirectory(prefix="kfm-bench-sweep-") as tmp:
        folder = Path(tmp)
        env = {**os.environ, "KFM_INCIDENT_ROOT": str(folder / "incidents")}
        subprocess.run(
            [*CLI, "sandbox", "create", str(folder / "sbx")],
            env=env,
            capture_output=True,
            check=True,
        )
        target = str(folder / "sbx" / "target.yaml")
        sequential, swept = [], []
        for _ in range(args.runs):
            inc = _incident(env)
            start = time.perf_counter()
            for rid in ids:
                _run([*CLI, "run", rid, "--incident", inc, "--target", target], env)
            sequential.append(time.perf_counter() - start)
            inc = _incident(env)
            start = time.perf_counter()
            _run(
                [
                    *CLI,
                    "sweep",
                    "--incident",
                    inc,
                    "--target",
                    target,
                    *[a for d in domains for a in ("--domain", d)],
                    "--jobs",
                    str(cores),
                ],
                env,
            )
            swept.append(time.perf_counter() - start)
        seq, swp = statistics.median(sequential), statistics.median(swept)
        print(f"{len(ids)} runbooks ({', '.join(domains)}), {cores} core(s), median of {args.runs}")
        print(f"sequential runs      {seq:8.1f} s")
        print(f"sweep --jobs {cores:<8}{swp:8.1f} s   {swp / seq:.2f}x sequential")
        rss = peak_rss_mib(args.rss_gib, folder)
        print(f"peak RSS hashing a {args.rss_gib} GiB file: {rss:.0f} MiB")


if __name__ == "__main__":
    main()
