"""``python -m mmo_magic.service``: the same as ``mmo-serve``."""

import sys

from mmo_magic.service.cli import main

sys.exit(main())
