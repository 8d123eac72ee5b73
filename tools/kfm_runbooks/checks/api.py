"""API / running services: the domain's checks, one module per runbook.

- `api_errors`   RBK-api-5xx-spike            probes, access log, /metrics, feature flags
- `api_queries`  RBK-api-slow-queries         pg_stat_statements, EXPLAIN, expected indexes
- `api_auth`     RBK-api-auth-regression      role x layer probe matrix against the policy
- `api_abuse`    RBK-api-rate-limit-abuse     per-client rates, 429 shares, the block list
- `api_common`   shared: self-identifying probes, access-log reader, percentiles

Importing this module registers every `api.<op>` undo operation, which is how
`kfm-runbook rollback` finds them (it imports `checks/<domain>.py`). Light imports only
(psycopg is imported inside the functions that talk to PostgreSQL).
"""

from __future__ import annotations

from . import api_abuse, api_auth, api_common, api_errors, api_queries

__all__ = ["api_abuse", "api_auth", "api_common", "api_errors", "api_queries"]
