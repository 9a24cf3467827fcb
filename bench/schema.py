"""python -m bench.schema: every CSV column of results/<run_id>/, its meaning, and the code that fills it.

The schema itself is ``bench.results.schema``.
"""
from __future__ import annotations

import sys

from bench.results.schema import describe


def main(argv: list[str] | None = None) -> int:
    import argparse
    argparse.ArgumentParser(prog="python -m bench.schema", description=__doc__.splitlines()[0]).parse_args(argv)
    print(describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
