"""`python -m jobcollection`: the jobcollection command (cli.py)."""

import sys

from .cli import main

sys.exit(main())
