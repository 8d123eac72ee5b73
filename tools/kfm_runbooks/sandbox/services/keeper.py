"""The live sandbox's keeper: stops its services when the process that owns them dies.

`supervisor.up(folder, owner=PID)` (tests, golden generation, anything that wants the
services only for its own lifetime) starts this process in its own session:

    python -m kfm_runbooks.sandbox.services.keeper --owner PID:START --folder DIR

It waits until the owner is gone, by pid *and* start time (a recycled pid is not the
owner), then runs `supervisor.down(DIR)`: API, fault client, PostgreSQL (a daemon, not
anyone's child) and the data volume. It leaves quietly when the services were already
brought down normally (their services.json is gone). `kfm-runbook sandbox up` from the
command line starts no keeper: its services outlive the command until `sandbox down`.
"""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path

from ..._proc import ProcessRef

POLL_S = 0.25


def keep(owner: ProcessRef, folder: Path, poll: float = POLL_S) -> bool:
    """Wait for the owner's death, then bring the services down; False if they were
    brought down before that (nothing to do)."""
    from . import supervisor

    state = supervisor.state_path(folder)
    while owner.alive():
        if not state.exists():
            return False
        time.sleep(poll)
    if not state.exists():
        return False
    supervisor.down(folder)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--owner", required=True, type=ProcessRef.parse)
    parser.add_argument("--folder", required=True, type=Path)
    args = parser.parse_args()
    # Whatever happens to the owner's terminal or process group, finish the clean-up.
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    keep(args.owner, args.folder)


if __name__ == "__main__":
    main()
