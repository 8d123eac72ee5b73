"""The sandbox's parts: each module with `build(folder, clean)` writes one slice of the
sandbox (files, target sections, seeded faults). Built in module-name order."""
