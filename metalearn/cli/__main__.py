"""``python -m metalearn.cli``."""

import sys

from metalearn.cli.main import main

sys.exit(main())
