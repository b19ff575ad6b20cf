"""``python -m mmo_magic.service``: the same as ``mmo-serve``."""

import sys

# Absolute, so that run under an old alias (python -m mmo_magic.server) it is still this cli.
from mmo_magic.service.cli import main

sys.exit(main())
