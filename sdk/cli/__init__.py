"""The ``sdk`` command line: one module per sub-command, wired in ``main``."""
