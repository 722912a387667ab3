"""``python -m neurosuite`` and ``accelerate launch -m neurosuite``: the ``neurosuite`` command."""

import sys

from neurosuite.cli import main

sys.exit(main())
