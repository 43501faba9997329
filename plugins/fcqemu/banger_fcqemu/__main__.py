"""``python -m banger_fcqemu``."""

import sys

from banger_fcqemu.main import main

sys.exit(main())
