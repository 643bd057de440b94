"""`python -m vavl.cli ...` is the `vavl` command."""
import sys

from . import main

sys.exit(main())
