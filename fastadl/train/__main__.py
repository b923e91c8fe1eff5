"""``python -m fastadl.train``: see fastadl/train/cli.py."""

import sys

from fastadl.train.cli import main

sys.exit(main())
