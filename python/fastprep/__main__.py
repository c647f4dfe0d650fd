import sys

from fastprep.cli import main

sys.exit(main())
