"""`python -m jobcollection.cli`: the jobcollection command, as `python -m jobcollection`."""

import sys

from . import main

sys.exit(main())
