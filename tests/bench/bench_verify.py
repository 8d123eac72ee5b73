"""Benchmark: `kfm-runbook verify` of a workspace with --mib MiB of evidence vs `sha256sum -c`.

Builds an incident whose 10_evidence holds --files files of random bytes (--mib MiB in all),
published the way runs publish evidence (ledger entries + hashes.sha256), then times,
--runs times each in one sitting (default 5), and prints medians and ratios:

- `sha256sum -c hashes.sha256` in 10_evidence (the baseline the README promises);
- `xargs -P<cores> sha256sum` over the same files (coreutils on every core);
- `verify` as a library call (`verify_locked`: ledger chain, manifest, every file hashed
  across cores with `_fs.sha256_many`);
- `kfm-runbook verify INC` as a command (adds interpreter start and imports).

    .venv/bin/python tests/bench/bench_verify.py [--mib 1024] [--files 64] [--runs 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from kfm_runbooks._fs import hash_jobs
from kfm_runbooks.evidence import publish_locked
from kfm_runbooks.layout import Workspace
from kfm_runbooks.verify import verify_locked
from kfm_runbooks.workspace import create_incident


def median(runs: int, action: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def build(root: Path, mib: int, files: int) -> Workspace:
    workspace = create_incident("bench: verify", "Sev3", root=root, actor="bench")
    size = (mib << 20) // files
    with workspace.locked():
        for index in range(files):
            name = f"logs/bench-{index:04d}.bin"
            data = os.urandom(size)
            publish_locked(
                workspace,
                [(f"10_evidence/{name}", data)],
                "evidence",
                {"path": name, "sha256": hashlib.sha256(data).hexdigest()},
                "bench",
            )
    return workspace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--files", type=int, default=64)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kfm-bench-verify-") as tmp:
        root = Path(tmp)
        workspace = build(root, args.mib, args.files)
        evidence = workspace.path / "10_evidence"
        names = sorted(p.name for p in (evidence / "logs").iterdir())
        cores = hash_jobs()

        def coreutils() -> None:
            subprocess.run(
                ["sha256sum", "--quiet", "-c", "hashes.sha256"], cwd=evidence, check=True
            )

        def coreutils_parallel() -> None:
            subprocess.run(
                ["xargs", "-0", f"-P{cores}", "-n4", "sha256sum"],
                input="\0".join(names).encode(),
                cwd=evidence / "logs",
                check=True,
                capture_output=True,
            )

        def library() -> None:
            with workspace.locked():
                report = verify_locked(workspace, None)
            assert report.ok, report.problems[:3]

        def command() -> None:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "kfm_runbooks",
                    "verify",
                    workspace.incident_id,
                    "--root",
                    str(root),
                ],
                check=True,
                capture_output=True,
            )

        coreutils()  # warm the page cache once: every contender reads from memory
        base = median(args.runs, coreutils)
        rows = [
            ("sha256sum -c hashes.sha256", base),
            (f"xargs -P{cores} sha256sum", median(args.runs, coreutils_parallel)),
            ("verify (library call)", median(args.runs, library)),
            ("kfm-runbook verify (command)", median(args.runs, command)),
        ]
        gib = args.mib / 1024
        print(f"{args.mib} MiB in {args.files} files, {cores} core(s), median of {args.runs}")
        print(f"{'contender':<32}{'seconds':>9}{'GiB/s':>8}{'vs sha256sum -c':>17}")
        for name, seconds in rows:
            print(f"{name:<32}{seconds:>9.3f}{gib / seconds:>8.2f}{base / seconds:>16.2f}x")


if __name__ == "__main__":
    main()
