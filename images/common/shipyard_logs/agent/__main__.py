"""`python3 -m shipyard_logs.agent`: the same command as `shipyard-logs agent`."""

import sys

from .cli import main

sys.exit(main())
