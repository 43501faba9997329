"""Make the example plugins importable for their own tests when run from this repository.

An out-of-tree plugin is pip-installed (``pip install -e .``) before its tests
run; here the examples are put on ``sys.path`` instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

for example in sorted(Path(__file__).parent.iterdir()):
    if (example / "pyproject.toml").exists() and str(example) not in sys.path:
        sys.path.insert(0, str(example))
