"""``python -m banger_core.fcqemu``."""

import sys

from banger_core.fcqemu.main import main

sys.exit(main())
