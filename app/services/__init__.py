"""Use cases: each opens one unit of work, applies a domain rule, writes the ledger, commits."""
