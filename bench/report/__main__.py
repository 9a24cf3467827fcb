"""``python -m bench.report [RUN_ID | --latest] [--compare OTHER_RUN_ID]``: see :func:`bench.report.render.main`."""
import sys

from bench.report.render import main

if __name__ == "__main__":
    sys.exit(main())
