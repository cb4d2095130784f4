"""``python -m qcore``: the command line (:mod:`qcore.cli`)."""

import sys

from qcore.cli import main

sys.exit(main())
