"""``python -m fastadl.study``: see fastadl/study/cli.py."""

import sys

from fastadl.study.cli import main

sys.exit(main())
