"""``python -m collapse_jax``: the ``collapse-jax`` command line (for an environment without the console script on
its PATH)."""

import sys

from collapse_jax.cli import main

sys.exit(main())
