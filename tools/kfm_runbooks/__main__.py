"""`python -m kfm_runbooks` is `kfm-runbook`."""

from .cli import main

main()
