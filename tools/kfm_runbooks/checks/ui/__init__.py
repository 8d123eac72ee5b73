"""UI checks: accessibility, layer registry, stories, timeline, UI contracts."""
