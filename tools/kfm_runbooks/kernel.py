"""The project kernel: install it pinned to this interpreter, find it, start it over IPC.

The packaged `kernels/kfm-runbook/kernel.json` (paths.kernelspec_source) is installed into
this environment (`--sys-prefix`, the default), the user's Jupyter folder (`--user`) or a
prefix, with argv[0] rewritten to this interpreter's absolute path, so every run uses the
same Python whatever `python` means on PATH. Its env fixes TZ=UTC and PYTHONHASHSEED=0.

Kernels talk over the IPC transport (Unix sockets in a private runtime folder), not TCP:
no open ports, no port races between parallel runs, and no "running over TCP without
encryption" warning.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import paths
from ._fs import replace_atomic
from .errors import InputError, KernelMissingError

KERNEL_NAME = "kfm-runbook"
INSTALL_SCOPES = ("sys-prefix", "user", "prefix")


def install(scope: str = "sys-prefix", prefix: Path | None = None) -> Path:
    """Install the packaged kernelspec pinned to sys.executable, as ipykernel does.

    scope: "sys-prefix" (this environment, the default), "user" (the user's Jupyter
    folder) or "prefix" (PREFIX/share/jupyter/kernels, `prefix` required).
    """
    from jupyter_client.kernelspec import KernelSpecManager

    if scope not in INSTALL_SCOPES:
        raise InputError(f"unknown kernel install scope {scope!r}: {', '.join(INSTALL_SCOPES)}")
    if (scope == "prefix") != (prefix is not None):
        raise InputError("--prefix PREFIX goes with the prefix scope only")
    source = paths.kernelspec_source(KERNEL_NAME)
    if not (source / "kernel.json").is_file():
        raise KernelMissingError(KERNEL_NAME, f"no kernel.json in {source}", fix_command())
    spec = json.loads((source / "kernel.json").read_text())
    spec["argv"][0] = sys.executable
    spec.setdefault("metadata", {}).setdefault("kfm", {})["note"] = (
        f"installed by kfm-runbook kernel install, pinned to {sys.executable}"
    )
    with tempfile.TemporaryDirectory() as staging:
        folder = Path(staging) / KERNEL_NAME
        shutil.copytree(source, folder)
        replace_atomic(folder / "kernel.json", (json.dumps(spec, indent=1) + "\n").encode())
        dest = KernelSpecManager().install_kernel_spec(
            str(folder),
            KERNEL_NAME,
            user=scope == "user",
            prefix=str(prefix)
            if scope == "prefix"
            else sys.prefix
            if scope == "sys-prefix"
            else None,
        )
    return Path(dest)


def fix_command() -> str:
    """The exact command that installs the kernel for this interpreter."""
    script = Path(sys.executable).parent / "kfm-runbook"
    on_path = shutil.which("kfm-runbook")
    if script.is_file() and on_path is not None and Path(on_path).resolve() == script.resolve():
        return "kfm-runbook kernel install --sys-prefix"
    if script.is_file():
        return f"{script} kernel install --sys-prefix"
    return f"{sys.executable} -m kfm_runbooks kernel install --sys-prefix"


def spec_info(name: str = KERNEL_NAME) -> dict[str, Any]:
    """The installed spec (resource dir + argv), or KernelMissingError with the fix."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel as exc:
        raise KernelMissingError(name, "", fix_command()) from exc
    interpreter = Path(spec.argv[0])
    if interpreter.is_absolute() and not interpreter.exists():
        raise KernelMissingError(
            name, f"its interpreter {interpreter} no longer exists", fix_command()
        )
    return {
        "name": name,
        "resource_dir": spec.resource_dir,
        "argv": list(spec.argv),
        "env": dict(spec.env),
    }


def ipc_kernel_manager_class(socket_dir: Path, pid_file: Path | None = None) -> type:
    """An AsyncKernelManager on the IPC transport, sockets under `socket_dir`.

    The kernel dies with the process that starts it (`_proc.guarded`: it runs in its own
    session, so it would otherwise outlive a killed runner and go on changing the target).
    When `pid_file` is given, the kernel's identity (`_proc.ProcessRef` text; its pid is
    also its process-group id) is written there as soon as it starts, so that a watchdog in
    another process can stop a hung kernel. Built lazily: heavy imports.
    """
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    from ._proc import ProcessRef, guarded

    class IPCKernelManager(AsyncKernelManager):
        @default("transport")
        def _default_transport(self) -> str:
            return "ipc"

        @default("ip")
        def _default_ip(self) -> str:
            return str(socket_dir / "kernel")

        @default("connection_file")
        def _default_connection_file(self) -> str:
            # Not a tempfile in $TMPDIR: it holds the HMAC key and must go with the folder.
            return str(socket_dir / "connection.json")

        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            await super()._async_launch_kernel(guarded(kernel_cmd), **kw)

        async def _async_post_start_kernel(self, **kw: Any) -> None:
            pid = getattr(self.provisioner, "pid", None)
            if pid_file is not None and pid is not None:
                ref = ProcessRef.of(int(pid))
                replace_atomic(pid_file, f"{ref or pid}\n".encode())
            await super()._async_post_start_kernel(**kw)

    return IPCKernelManager
