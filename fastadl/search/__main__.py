"""``python -m fastadl.search``: see fastadl/search/cli.py."""

import sys

from fastadl.search.cli import main

sys.exit(main())
