"""The credit rules: pure Python, standard library plus dateutil, no I/O."""
