"""Pipelines / intake: the domain's checks, one module per runbook.

- `pipelines_watchers`    RBK-pipelines-watcher-stuck      registry, liveness (+ `pipelines_gate`)
- `pipelines_sync`        RBK-pipelines-etag-loop          run receipts, conditional-fetch loops
- `pipelines_releases`    RBK-pipelines-partial-write      release manifests, pointer, plans
- `pipelines_determinism` RBK-pipelines-determinism-drift  receipt artifacts, run outputs

Importing this module registers every `pipelines.<op>` undo operation, which is how
`kfm-runbook rollback` finds them (it imports `checks/<domain>.py`).
"""

from __future__ import annotations

from . import pipelines_determinism, pipelines_releases, pipelines_sync, pipelines_watchers

__all__ = ["pipelines_determinism", "pipelines_releases", "pipelines_sync", "pipelines_watchers"]
