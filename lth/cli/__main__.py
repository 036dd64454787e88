"""`python -m lth.cli ...`: the `lth` command."""

import os
import sys

from lth.cli.main import main

os.environ.setdefault("WANDB_SILENT", "true")
sys.exit(main())
