"""The --help formatter of the commands whose description or epilog is laid out by hand (a suite list, exit
statuses): line breaks and indentation kept as written, and a line longer than the terminal wrapped under its own
text (an indented ``name   text`` line continues under ``text``), so --help and the generated reference pages
never run past 80 columns."""
from __future__ import annotations

import argparse
import re
import textwrap


class RawWrappedFormatter(argparse.RawDescriptionHelpFormatter):
    """``RawDescriptionHelpFormatter`` that wraps each over-long line of the description and the epilog."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out = []
        for line in text.splitlines():
            if len(indent + line) <= width:
                out.append(indent + line)
                continue
            m = re.match(r"(\s*)(\S+(?: \S+)?\s{2,})?", line)  # leading space, then a "name   " column if there is one
            lead, column = m.group(1), m.group(2) or ""
            column = column if len(lead + column) <= width // 3 else ""
            out += textwrap.wrap(line[len(lead):], width, initial_indent=indent + lead,
                                 subsequent_indent=indent + lead + " " * len(column), break_on_hyphens=False) or [""]
        return "\n".join(out)
