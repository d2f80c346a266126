"""``python -m mmembed.cli ARGS``: the ``mmembed`` command."""

import sys

from . import main

sys.exit(main())
