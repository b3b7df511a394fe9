"""``python -m ddpm_ref`` is the same as the ``ddpm-ref`` command.

Layer: command line (imports anything below it; commands do not import each other).
"""

import sys

from ddpm_ref.cli import main

sys.exit(main())
