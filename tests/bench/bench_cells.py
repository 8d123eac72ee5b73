"""Benchmark: run time of `kfm-runbook run` against the number of cells.

papermill saves the whole notebook at every cell start and end, so a save-per-cell run is
quadratic in the number of cells; the worker saves at a bounded rate instead. This runs
generated notebooks of N trivial cells (each prints one line), N = --cells (default 1000)
and a tenth of it, --runs times each (default 3), and prints the medians and their ratio:
a linear run time gives a ratio near 10 (plus the fixed start-up cost), a quadratic one
approaches 100. With --baseline DIR, runs alternate with the package found in DIR (e.g. an
older `tools/` exported with `git archive`), so both versions see the same machine load.

    .venv/bin/python tests/bench/bench_cells.py [--cells 1000] [--runs 3] [--baseline DIR]
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

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

BIN = Path(sys.executable).parent
_CELLS = ("parameters", "setup")
# The parameters and setup cells every runbook starts with, from the library's template
_TEMPLATE = nbformat.read(
    Path(__file__).resolve().parents[2] / "runbooks/TEMPLATE_runbook.ipynb", as_version=4
)
PARAMETERS, SETUP = (
    next(c.source for c in _TEMPLATE.cells if c.id == i) for i in ("parameters", "setup")
)


def many_cells(path: Path, cells: int) -> Path:
    """A runbook-shaped notebook: parameters, setup, `cells` one-line cells, one check."""
    body = [
        new_code_cell(PARAMETERS, id="parameters", metadata={"tags": ["parameters"]}),
        new_code_cell(SETUP, id="setup"),
        *(new_code_cell(f"print('cell {n}')", id=f"cell-{n}") for n in range(cells)),
        new_code_cell(
            f'run.check("all-cells-ran", "PASS", examined={cells}, in_scope={cells}, unit="cells")',
            id="check",
        ),
    ]
    nb = new_notebook(cells=body)
    nb.metadata = {
        "kernelspec": {"display_name": "KFM Runbook", "language": "python", "name": "kfm-runbook"},
        "kfm_runbook": {"id": f"RBK-bench-{cells}-cells", "title": "bench", "version": "0.0.1"},
    }
    nbformat.write(nb, path)
    return path


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"run failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="a folder holding another kfm_runbooks")
    args = parser.parse_args()
    from kfm_runbooks.sandbox import create_sandbox
    from kfm_runbooks.workspace import create_incident

    with tempfile.TemporaryDirectory(prefix="kfm-bench-") as tmp:
        base = Path(tmp)
        target = create_sandbox(base / "sandbox", clean=True)
        ws = create_incident("bench", "Sev3", root=base / "incidents", actor="bench")
        env = {**os.environ, "KFM_INCIDENT_ROOT": str(base / "incidents"), "KFM_ACTOR": "bench"}
        variants = {"this tree": env}
        if args.baseline is not None:
            path = os.pathsep.join([str(args.baseline.resolve()), env.get("PYTHONPATH", "")])
            variants["baseline"] = {**env, "PYTHONPATH": path.rstrip(os.pathsep)}
        sizes = [max(1, args.cells // 10), args.cells]
        medians: dict[tuple[str, int], float] = {}
        for size in sizes:
            notebook = many_cells(base / f"cells-{size}.ipynb", size)
            cmd = [str(BIN / "kfm-runbook"), "run", str(notebook), "--incident", ws.incident_id]
            cmd += ["--target", str(target), "--json"]
            times: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(args.runs):  # alternating: both see the same machine load
                for name, variant_env in variants.items():
                    times[name].append(timed(cmd, variant_env))
                    print(f"  {name:<10} {size:>6} cells: {times[name][-1]:.2f}s", flush=True)
            for name, values in times.items():
                medians[name, size] = statistics.median(values)
                print(
                    f"{name:<10} {size:>6} cells: median {medians[name, size]:.2f}s "
                    f"(min {min(values):.2f}, max {max(values):.2f}, {args.runs} runs)",
                    flush=True,
                )
        small, large = sizes
        for name in variants:
            ratio = medians[name, large] / medians[name, small]
            print(f"{name:<10} ratio {large}/{small} cells: {ratio:.1f}x for {large // small}x")
        if "baseline" in variants:
            for size in sizes:
                ratio = medians["baseline", size] / medians["this tree", size]
                print(f"{size:>6} cells: baseline / this tree = {ratio:.1f}x")


if __name__ == "__main__":
    main()
