"""Benchmark: one `kfm-runbook run` of the checksum runbook against plain `papermill`.

Same notebook, same parameters, same kernel, same machine, one sitting; alternating runs;
median of N (default 5). The difference is what sealing costs (parameter validation,
worker process, IPC kernel, redaction, hashing, ledger, PROV, timeline).

    .venv/bin/python tests/bench/bench_run.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kfm_runbooks import paths

BIN = Path(sys.executable).parent
RUNBOOK = paths.packaged_library() / "catalog/RBK-catalog-checksum-mismatch.ipynb"


def timed(cmd: list[str], env: dict[str, str]) -> float:
    """Wall seconds of `cmd`; a failed run ends the bench (a failure is not a timing)."""
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{Path(cmd[0]).name} failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from kfm_runbooks.sandbox import create_sandbox
    from kfm_runbooks.workspace import create_incident

    with tempfile.TemporaryDirectory(prefix="kfm-bench-") as tmp:
        base = Path(tmp)
        target = create_sandbox(base / "sandbox", clean=True)
        ws = create_incident("bench", "Sev3", root=base / "incidents", actor="bench")
        env = {**os.environ, "KFM_INCIDENT_ROOT": str(base / "incidents"), "KFM_ACTOR": "bench"}
        ours = [
            str(BIN / "kfm-runbook"),
            "run",
            str(RUNBOOK),
            "--incident",
            ws.incident_id,
            "--target",
            str(target),
        ]
        plain = [
            str(BIN / "papermill"),
            str(RUNBOOK),
            str(base / "out.ipynb"),
            "-k",
            "kfm-runbook",
            "--no-progress-bar",
            "-p",
            "incident_id",
            ws.incident_id,
            "-p",
            "workspace",
            str(ws.path),
            "-p",
            "target",
            str(target),
        ]
        # papermill with the same import deferral our CLI uses (see _speedups.py): isolates
        # what sealing itself costs from the rfc3987_syntax import we defer.
        skip = [
            sys.executable,
            "-c",
            "import sys; from kfm_runbooks._speedups import defer_slow_optional_imports; "
            "defer_slow_optional_imports(); from papermill.cli import papermill; "
            "sys.argv = ['papermill'] + sys.argv[1:]; papermill()",
            *plain[1:],
        ]
        timed(plain, env)  # warm caches once
        times: dict[str, list[float]] = {
            "kfm-runbook run": [],
            "plain papermill": [],
            "papermill, same deferral": [],
        }
        for _ in range(args.runs):
            for name, cmd in zip(times, (ours, plain, skip), strict=True):
                times[name].append(timed(cmd, env))
        print(f"runs per tool: {args.runs} (alternating), checksum runbook, clean sandbox")
        medians = {name: statistics.median(values) for name, values in times.items()}
        for name, values in times.items():
            print(
                f"{name:<22}: median {medians[name]:.2f}s  "
                f"(min {min(values):.2f}, max {max(values):.2f})"
            )
        ours_m = medians["kfm-runbook run"]
        for name in ("plain papermill", "papermill, same deferral"):
            print(
                f"ratio ours / {name:<20}: {ours_m / medians[name]:.2f}x "
                f"({ours_m - medians[name]:+.2f}s)"
            )


if __name__ == "__main__":
    main()
