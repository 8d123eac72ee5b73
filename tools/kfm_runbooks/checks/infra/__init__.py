"""Infrastructure checks: disk pressure, TLS certificates, backups."""
