"""``python -m batchline.cli``: the same as the ``batchline`` console script."""

import sys

from batchline.cli.main import main

sys.exit(main())
