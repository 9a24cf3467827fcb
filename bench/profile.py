"""python -m bench.profile MODEL [MODEL...]: where each twin's train step goes, layer by layer.

Runs the profile suite for the models given, through python -m bench.run: every job in its own
process, one row per layer and phase in results/<run_id>/profile.csv, traces in
results/<run_id>/traces/, and the report's "Where the time goes" section in reports/<run_id>/.
Any other flag goes to bench.run as it is (--out DIR, --reports DIR, --dry-run, --data-dir DIR);
a stopped run goes on with python -m bench.run --resume RUN_ID.

Examples:
  python -m bench.profile resnet20_v1 densenet40_k12 --device cpu
  python -m bench.profile resnet20_v1 --keras-backend all --steps 3
  python -m bench.profile densenet40_k12_memeff --frameworks torch --batch-size 16
"""
from __future__ import annotations

import argparse
import sys

from bench.core.helpfmt import RawWrappedFormatter


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0],
                                 formatter_class=RawWrappedFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("models", nargs="+", metavar="MODEL", help="registry names or fnmatch patterns")
    ap.add_argument("--frameworks", default="torch,keras", metavar="F[,F]", help="torch, keras (default: both)")
    ap.add_argument("--keras-backend", default=None, metavar="B[,B]|all",
                    help="tensorflow, jax, torch, a list, or all (default: every installed backend)")
    ap.add_argument("--exec-mode", default=None, metavar="M[,M]",
                    help="torch eager; keras nojit (TensorFlow, torch) or jit (JAX) are the attributed ones (default: "
                         "each stack's default on the device)")
    ap.add_argument("--batch-size", type=int, default=None, metavar="B", help="(default: 32 on a CPU, 64 on a GPU)")
    ap.add_argument("--precision", default=None, metavar="P", help="fp32 | bf16 | fp16 (default: fp32)")
    ap.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto", help="(default: auto)")
    ap.add_argument("--steps", type=int, default=None, metavar="N", help="profiled steps (default: 5 on a CPU, 10 on a GPU)")
    ap.add_argument("--twins", action="append", metavar="FILE", default=[],
                    help="a twins file (path.py, or module:attr) adding your own twins, named like built-in ones "
                         "(proven one network first; repeatable)")
    a, rest = ap.parse_known_args(argv)
    run_argv = ["--suite", "profile", "--models", ",".join(a.models), "--frameworks", a.frameworks, "--device", a.device]
    for flag, value in (("--keras-backend", a.keras_backend), ("--exec-mode", a.exec_mode),
                        ("--batch-sizes", a.batch_size), ("--precision", a.precision), ("--steps", a.steps)):
        if value is not None:
            run_argv += [flag, str(value)]
    for ref in a.twins:
        run_argv += ["--twins", ref]
    from bench.run import main as run_main
    return run_main(run_argv + rest)  # the rest: bench.run's own flags (--out, --reports, --dry-run, ...)


if __name__ == "__main__":
    sys.exit(main())
