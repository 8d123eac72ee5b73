"""Graph checks: the access layer and its back ends, closure, orphans, schema, backups."""
