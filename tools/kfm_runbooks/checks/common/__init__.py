"""Shared helpers of the checks, one job each (reuse them; never copy them into a domain).

    files     bounded read of a regular file (O_NOFOLLOW + fstat), file sha256
    jcs       RFC 8785 canonical JSON and KFM's spec_hash
    json      strict JSON loading and RFC 6901 JSON pointers
    paths     `inside` (containment without following the last link) and `rel` display paths
    findings  the findings-report base: outcome and codes, one rule for every report
    matchers  KFM's one-line expected-error matchers (fixtures' *.expected_error.txt)
    vocab     the vocabulary as StrEnums: severity, verdict, check status, run outcome,
              ledger kind (values equal the persisted strings)

Each domain maps a helper's problem kind to its own finding code, as `json.load_strict`'s
callers do. Standard library (plus `rfc8785`) only: everything here is imported in the kernel.
"""
