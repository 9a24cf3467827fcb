"""``python -m bench.history [DIR ...]``: every run under results/ (and the folders given) in one table, and a
history report per machine (reports/history/): see :mod:`bench.report.history`."""
import sys

from bench.report.history import main

if __name__ == "__main__":
    sys.exit(main())
