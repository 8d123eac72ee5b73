"""Saving the notebook papermill executes at a bounded rate, not at every cell.

papermill writes the whole notebook at every cell start, every cell end and on outputs:
O(cells) bytes per save times O(cells) saves, quadratic (1000 trivial cells took two
minutes). Here a save happens at most once per `interval` seconds (and never more often
than ten times the last save's own duration, so saving stays under a tenth of the run);
a save asked for too early is not dropped but deferred to the earliest allowed moment on
the executor's event loop, so a long cell never leaves the file stale for more than about
one interval. The first save (notebook start) and the last (notebook end: completed, cell
error, dead kernel, timeout - papermill calls it in a `finally`) are always written. Each
save is atomic (temp file + rename): a kill mid-save leaves the previous complete file.

Used only by the worker process (`_worker.py`), which registers the engine under ENGINE.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENGINE = "kfm-bounded-save"
DEFAULT_INTERVAL_S = 1.0
SAVE_BUDGET = 10  # wait at least this many times the last save's duration


@dataclass
class SaveStats:
    """What the engine did in this process (the worker reports it in its status)."""

    interval: float = DEFAULT_INTERVAL_S
    saves: int = 0
    deferred: int = 0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "save_interval": self.interval,
            "saves": self.saves,
            "saves_deferred": self.deferred,
        }


STATS = SaveStats()


def register(interval: float = DEFAULT_INTERVAL_S) -> SaveStats:
    """Register the engine with papermill; returns the stats its managers update."""
    import nbformat
    from jupyter_core.utils import ensure_event_loop
    from papermill.engines import (
        NBClientEngine,
        NotebookExecutionManager,
        catch_nb_assignment,
        papermill_engines,
    )

    from ._fs import replace_atomic

    stats = STATS
    stats.interval = interval

    class BoundedSaveManager(NotebookExecutionManager):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._last: float | None = None  # monotonic time of the last save
            self._wait = interval
            self._pending: asyncio.TimerHandle | None = None

        @catch_nb_assignment  # type: ignore[untyped-decorator]
        def save(self, **kwargs: Any) -> None:
            now = time.monotonic()
            if self._last is None or now - self._last >= self._wait:
                self._write()
            elif self._pending is None:
                stats.deferred += 1
                self._pending = ensure_event_loop().call_later(
                    self._last + self._wait - now, self._write
                )

        def _write(self) -> None:
            if self._pending is not None:
                self._pending.cancel()
                self._pending = None
            if self.output_path:
                start = time.monotonic()
                replace_atomic(Path(self.output_path), nbformat.writes(self.nb).encode())
                stats.saves += 1
                self._wait = max(interval, SAVE_BUDGET * (time.monotonic() - start))
            self._last = time.monotonic()
            self.last_save_time = self.now()

        def notebook_complete(self, **kwargs: Any) -> None:
            self._last = None  # the final save is never deferred
            super().notebook_complete(**kwargs)

    class BoundedSaveEngine(NBClientEngine):  # type: ignore[misc]
        @classmethod
        def execute_notebook(
            cls,
            nb: Any,
            kernel_name: str,
            output_path: str | None = None,
            progress_bar: bool = True,
            log_output: bool = False,
            autosave_cell_every: int = 30,
            **kwargs: Any,
        ) -> Any:
            """papermill's Engine.execute_notebook, with the bounded-rate manager (which
            is also asked to save on outputs, about once per interval)."""
            nb_man = BoundedSaveManager(
                nb,
                output_path=output_path,
                progress_bar=progress_bar,
                log_output=log_output,
                autosave_cell_every=max(1, math.ceil(interval)),
            )
            nb_man.notebook_start()
            try:
                cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
            finally:
                nb_man.cleanup_pbar()
                nb_man.notebook_complete()
            return nb_man.nb

    papermill_engines.register(ENGINE, BoundedSaveEngine)
    return stats
