"""The one entry point shape of every benchmark script in ``eval/``.

Each script defines ``add_arguments(parser)`` and ``run(args, argv) -> int`` and ends with
``sys.exit(main())`` where ``main = entry_point(__doc__, add_arguments, run)``: the module
docstring's first line is the description and the rest the epilog (usage examples), and
``run`` gets the argument list too, so reports can record the exact command.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


def entry_point(
    doc: str | None,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace, list[str]], int],
) -> Callable[[list[str] | None], int]:
    """``main(argv=None) -> exit code`` for a script with this docstring and these parts."""
    lines = (doc or "").splitlines()

    def main(argv: list[str] | None = None) -> int:
        args = list(sys.argv[1:] if argv is None else argv)
        parser = argparse.ArgumentParser(
            description=lines[0] if lines else None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            epilog="\n".join(lines[1:]),
        )
        add_arguments(parser)
        return int(run(parser.parse_args(args), args) or 0)

    return main


def write_report(path: str, report: Mapping[str, Any]) -> None:
    """Write a script's JSON report to ``path`` (creating its folder) and say so."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(report, indent=1))
    print(f"wrote {path}")
