"""``python -m banger_fcsim`` runs the simulator."""

import sys

from banger_fcsim.main import main

sys.exit(main())
