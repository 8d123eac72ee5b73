"""The live sandbox: real service processes on loopback (see supervisor.py)."""
