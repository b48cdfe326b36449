"""`python -m streamchat`."""

import sys

from .cli import main

sys.exit(main())
