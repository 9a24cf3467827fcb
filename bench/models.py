"""``python -m bench.models [PATTERN]``: the model table (name, trainable params, FLOPs per image, depth,
frameworks available). The registry itself is ``bench.zoo``."""
from __future__ import annotations

import argparse
import importlib.util
import sys

from bench.zoo import FRAMEWORKS, build, get_entry, get_spec, list_models


def framework_available(framework: str) -> bool:
    """The framework's package is installed (found without importing it)."""
    return importlib.util.find_spec(framework) is not None


def describe(name: str) -> dict:
    """Table row for ``name``: params and FLOPs from the table counted on the PyTorch twin (``bench.zoo.count_table``),
    else counted now on the built PyTorch twin (needs torch)."""
    from bench.zoo.counts import counted
    spec = get_spec(name)
    known = counted(name)
    if known is not None:
        trainable, non_trainable, fwd, train = known
    else:
        from bench.zoo.counts import flops_per_image, torch_param_counts
        model = build(name, "torch")
        trainable, non_trainable = torch_param_counts(model)
        fwd, train = flops_per_image(model, spec.input_size)
    entry = get_entry(name)
    return {"model": name, "params_trainable": trainable, "params_total": trainable + non_trainable,
            "paper_params": entry.paper_params, "fwd_mflops_per_image": fwd / 1e6,
            "train_mflops_per_image": train / 1e6, "depth": spec.depth, "description": entry.description,
            "counted": "table" if known is not None else "built"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.models", description="List the registered twin models.")
    ap.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern over names (default: *)")
    ap.add_argument("--twins", action="append", metavar="FILE", default=None,
                    help="a twins file (path.py, or module:attr) whose TWINS are listed with the built-in models")
    args = ap.parse_args(argv)
    if args.twins:
        from bench.zoo import TwinsError, load_user_twins
        try:
            load_user_twins(args.twins)
        except TwinsError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    names = list_models(args.pattern)
    if not names:
        print(f"error: no model matches {args.pattern!r}; python -m bench.models lists them all", file=sys.stderr)
        return 2
    avail = {fw: framework_available(fw) for fw in FRAMEWORKS}
    for line in table_lines(names, avail):  # each row as it comes
        print(line, flush=True)
    return 0


def table_lines(names: list[str], avail: dict[str, bool]):
    """The table's header, then one line per model (counts from the table; a model not in it is counted on its
    torch twin, "n/a" without torch)."""
    from bench.zoo.counts import counted
    hdr = f"{'model':<28} {'params':>9} {'paper':>7} {'MFLOPs/img':>10} {'depth':>5}  torch keras  description"
    yield hdr
    yield "-" * len(hdr)
    for n in names:
        spec = get_spec(n)
        if counted(n) is not None or avail["torch"]:
            r = describe(n)
            params, flops = f"{r['params_trainable'] / 1e6:.3f}M", f"{r['fwd_mflops_per_image']:.1f}"
        else:
            params = flops = "n/a"  # counted on the torch twin
        paper = get_entry(n).paper_params or "-"
        yes = {True: "yes", False: "no"}
        yield (f"{n:<28} {params:>9} {paper:>7} {flops:>10} {spec.depth:>5}  {yes[avail['torch']]:>5} "
               f"{yes[avail['keras']]:>5}  {get_entry(n).description}")


def format_table(names: list[str], avail: dict[str, bool]) -> str:
    return "\n".join(table_lines(names, avail))


if __name__ == "__main__":
    sys.exit(main())
