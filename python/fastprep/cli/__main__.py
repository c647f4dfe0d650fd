"""``python -m fastprep.cli`` (the same as ``python -m fastprep``)."""

import sys

from fastprep.cli import main

sys.exit(main())
