"""`python -m picodns` starts the server, like the `picodns` command."""

import sys

from picodns.cli import main

sys.exit(main())
