"""Stock services for the tests: real software on loopback, built without the sandbox.

Each module starts one kind of service from stock parts (Debian's PostgreSQL, Python's
http.server, openssl ...) and always stops it. Runbooks are pointed at them through a target
that uses only the documented keys (README, "Pointing runbooks at production").
"""
