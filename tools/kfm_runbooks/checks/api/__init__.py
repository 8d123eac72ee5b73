"""API checks: 5xx spikes, auth regressions, slow queries, rate-limit abuse."""
