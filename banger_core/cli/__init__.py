"""The ``banger`` command line (click).

Never imports the store, pyroute2, loguru or plugin daemon code."""
