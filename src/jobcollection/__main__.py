"""`python -m jobcollection`: the jobcollection command (the cli package)."""

import sys

from .cli import main

sys.exit(main())
