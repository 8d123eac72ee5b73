"""Test helper for the ui checks: the sandbox's real API process alone (no PostgreSQL).

The ui runbooks only talk to the HTTP API (and the sandbox's admin command), so their unit
tests start just that process on loopback — the same `kfm_runbooks.sandbox.services.api`
server `sandbox up` starts — render the target's URLs as `up` does, and always stop it.
`reset_state` puts the running system's state back to the intended one between tests.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kfm_runbooks._proc import die_with_parent
from kfm_runbooks.sandbox import create_sandbox
from kfm_runbooks.sandbox.parts import live as live_part
from kfm_runbooks.sandbox.parts import ui_target
from kfm_runbooks.sandbox.services import target_render


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the sandbox API did not answer at {url}")


@contextmanager
def api_only(folder: Path) -> Iterator[Path]:
    """A fresh sandbox in `folder` with its API process up; yields target.yaml."""
    target = create_sandbox(folder)
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kfm_runbooks.sandbox.services.api",
            "--folder",
            str(folder),
            "--port",
            str(port),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent,  # a killed test run leaves no server behind
    )
    services = folder / "live" / "services.json"
    try:
        url = f"http://127.0.0.1:{port}"
        _wait(url + "/health")
        state = {"api": {"pid": process.pid, "port": port, "url": url}}
        services.write_text(json.dumps(state))
        target_render.render(folder, state)  # the target names the real URLs, as at `up`
        yield target
    finally:
        process.terminate()
        process.wait(timeout=10)
        services.unlink(missing_ok=True)


def reset_state(folder: Path) -> None:
    """The intended state again (faults off), as `sandbox create` wrote it."""
    import shutil

    live = folder / "live"
    shutil.rmtree(live / "state")
    reference = live_part.config()
    (live / "config.json").write_text(json.dumps(reference, indent=2, sort_keys=True) + "\n")
    live_part.write_state(live, reference)
    ui_target.section(folder)  # the reference files the target's ui section names
    (live / "faults.json").unlink(missing_ok=True)
