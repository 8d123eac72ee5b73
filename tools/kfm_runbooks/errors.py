"""One exception hierarchy for everything kfm-runbooks refuses to do.

Every error carries an actionable one-line message (what is wrong, how to fix it) and
the process exit code the CLI maps it to::

    RunbookError                    5  environment / unexpected
    ├── InputError                  2  the command line or a file given to it is wrong
    │   ├── InvalidIdError             malformed incident id, runbook id or path traversal
    │   ├── IncidentNotFoundError
    │   ├── RunbookNotFoundError
    │   ├── NotebookFormatError        not a readable / valid notebook
    │   ├── ParameterError             unknown name, missing parameters cell, non-JSON value
    │   ├── TargetError                malformed target YAML
    │   └── WorkspaceError             workspace missing pieces, or not a workspace
    ├── SetupError                  5  the machine is not ready (kernel, lock timeout)
    │   └── KernelMissingError
    ├── ActionFailedError           1  a requested change did not happen (a no-op undo)
    └── IntegrityError              1  evidence cannot be proven intact (verify)
        └── DamagedError               a record commands build on is damaged or edited:
                                       they refuse and point to `kfm-runbook verify`

Run outcomes (a failed verification check, a cell that raised, a timeout) are not
exceptions: they are evidence and come back as a RunResult.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_RUNBOOK_ERROR = 3
EXIT_RUN_ABORTED = 4
EXIT_ENVIRONMENT = 5


class RunbookError(Exception):
    """Root of all kfm-runbooks errors."""

    exit_code = EXIT_ENVIRONMENT

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InputError(RunbookError):
    exit_code = EXIT_BAD_INPUT


class InvalidIdError(InputError):
    pass


class IncidentNotFoundError(InputError):
    pass


class RunbookNotFoundError(InputError):
    pass


class NotebookFormatError(InputError):
    pass


class ParameterError(InputError):
    pass


class TargetError(InputError):
    pass


class WorkspaceError(InputError):
    pass


class SetupError(RunbookError):
    exit_code = EXIT_ENVIRONMENT


class KernelMissingError(SetupError):
    def __init__(
        self,
        kernel_name: str,
        detail: str = "",
        command: str = "kfm-runbook kernel install --sys-prefix",
    ) -> None:
        extra = f" ({detail})" if detail else ""
        super().__init__(f"kernel '{kernel_name}' is not installed{extra}: run `{command}`")
        self.kernel_name = kernel_name


class IntegrityError(RunbookError):
    exit_code = EXIT_CHECK_FAILED

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class DamagedError(IntegrityError):
    """The ledger, manifest or incident.yaml cannot be built on (torn, edited, unreadable)."""

    def __init__(self, incident_id: str, problem: str) -> None:
        super().__init__(
            f"{incident_id}: {problem}: nothing was changed; run `kfm-runbook verify "
            f"{incident_id}` for the full report",
            [problem],
        )
        self.incident_id = incident_id


class ActionFailedError(RunbookError):
    """A state change that was asked for did not happen (an undo that changed nothing or
    raised); it is recorded as failed in the ledger."""

    exit_code = EXIT_CHECK_FAILED
