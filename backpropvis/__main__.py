"""``python -m backpropvis`` (also how torchrun starts it)."""

import sys

from .cli import main

sys.exit(main())
