"""Child process that executes one runbook through papermill (`python -m kfm_runbooks._worker`).

Runs in its own process (and session) so that the parent can enforce a wall-clock limit
by killing the kernel - and, as a last resort, this process - without touching its own
state; papermill's `cwd` handling is process-global, which is one more reason. It dies
with the runner (`_proc.die_with_parent`), and the kernel dies with it (`_proc.guarded`):
a killed runner leaves nothing running.

Input: a request JSON (see execute.py). Output: the executed notebook at the requested
path inside the workspace (saved atomically at a bounded rate, `_autosave.py`, and always
once more at the end, also when a cell raises or the kernel dies) and a status JSON.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from ._fs import replace_atomic


def _progress(total: int) -> Any:
    def on_cell_start(cell: Any, cell_index: int, **_: Any) -> None:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags:
            print(
                f"  [{cell_index + 1}/{total}] (injected parameters)", file=sys.stderr, flush=True
            )
            return
        first = next((ln.strip() for ln in cell.source.splitlines() if ln.strip()), "")
        label = f" [{','.join(tags)}]" if tags else ""
        if cell.cell_type == "code":
            print(f"  [{cell_index + 1}/{total}]{label} {first[:70]}", file=sys.stderr, flush=True)

    return on_cell_start


def run(request: dict[str, Any]) -> dict[str, Any]:
    import nbformat
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    from . import _autosave
    from .kernel import ipc_kernel_manager_class

    os.chdir(request["cwd"])
    os.environ.update(request["env"])
    socket_dir = Path(request["private_dir"]) / "ipc"
    socket_dir.mkdir(exist_ok=True)
    os.environ["JUPYTER_RUNTIME_DIR"] = str(socket_dir)
    manager = ipc_kernel_manager_class(socket_dir, Path(request["pid_file"]))
    total = len(nbformat.read(request["input"], as_version=4).cells) + 1
    _autosave.register(float(request.get("save_interval", _autosave.DEFAULT_INTERVAL_S)))
    try:
        papermill.execute_notebook(
            request["input"],
            request["output"],
            parameters=request["parameters"],
            kernel_name=request["kernel_name"],
            progress_bar=False,
            request_save_on_cell_execute=True,
            start_timeout=request.get("start_timeout", 60),
            kernel_manager_class=manager,
            on_cell_start=_progress(total),
            engine_name=_autosave.ENGINE,
        )
    except PapermillExecutionError as exc:
        return {
            "status": "cell-error",
            "cell_index": exc.cell_index,
            "ename": exc.ename,
            "evalue": exc.evalue,
        }
    except DeadKernelError as exc:
        return {"status": "kernel-died", "detail": str(exc).splitlines()[0] if str(exc) else ""}
    except CellTimeoutError as exc:
        return {"status": "timeout", "detail": str(exc).splitlines()[0]}
    return {"status": "completed"}


def main() -> int:
    from ._speedups import defer_slow_optional_imports

    defer_slow_optional_imports()
    logging.basicConfig(level=logging.ERROR)
    request_path = Path(sys.argv[1])
    request = json.loads(request_path.read_text())
    if request.get("parent"):
        import signal

        from ._proc import die_with_parent

        die_with_parent(signal.SIGKILL, int(request["parent"]))
    status_file = Path(request["status_file"])
    try:
        status = run(request)
    except Exception as exc:  # the parent turns this into a recorded, failed run
        status = {
            "status": "internal-error",
            "ename": type(exc).__name__,
            "evalue": str(exc),
            "traceback": traceback.format_exc(),
        }
    from ._autosave import STATS

    replace_atomic(status_file, json.dumps({**status, **STATS.as_dict()}).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
