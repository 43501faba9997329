"""``python -m banger_core.fcsim`` runs the simulator."""

import sys

from banger_core.fcsim.main import main

sys.exit(main())
