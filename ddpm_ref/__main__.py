"""``python -m ddpm_ref`` is the same as the ``ddpm-ref`` command."""

import sys

from ddpm_ref.cli import main

sys.exit(main())
