"""``python -m nerfkit``: the ``nerfkit`` command."""

import sys

from nerfkit.cli import main

sys.exit(main())
