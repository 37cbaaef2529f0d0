"""
C{python -m bench}: see C{bench/README.md}.
"""

import sys

from bench._main import main

try:
    sys.exit(main())
except KeyboardInterrupt:
    # Every child was stopped on the way out.
    sys.stderr.write("python -m bench: interrupted\n")
    sys.exit(130)
