"""The project kernel's entry point: `python -m kfm_runbooks.kernel_launcher -f CONN`.

ipykernel's own launcher (`ipykernel_launcher`), after installing
`_speedups.defer_slow_optional_imports`, so that runbooks which validate JSON Schemas do
not pay seconds for an import they rarely use.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> None:
    # As ipykernel_launcher: the working folder leaves sys.path while the kernel loads
    # (InteractiveShellApp.init_path() adds it back for the notebook's own imports).
    if sys.path and (sys.path[0] == "" or Path(sys.path[0]) == Path.cwd()):
        del sys.path[0]
    from ._speedups import defer_slow_optional_imports

    defer_slow_optional_imports()
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()


if __name__ == "__main__":
    main()
