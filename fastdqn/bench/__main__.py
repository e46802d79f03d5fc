"""`python -m fastdqn.bench` = `fastdqn bench`."""

import sys

from .cli import main

sys.exit(main())
