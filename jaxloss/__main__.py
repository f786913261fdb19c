"""Command line: ``python -m jaxloss verify [--loss NAME]`` and ``python -m jaxloss catalogue``.

``verify`` runs every catalogue entry through the gradient checker (reverse and forward
mode against autodiff of the formula and float64 finite differences) and the
low-precision check (float32 and bfloat16 inputs against float64), prints a table, and
exits with status 1 if any entry fails.  ``catalogue`` prints the README's table of
losses, generated from ``jaxloss/catalogue.py``.
"""

from __future__ import annotations

import argparse
import sys

from jaxloss import _verify, catalogue


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxloss", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify", help="check every loss's derivatives and precision")
    verify.add_argument("--loss", action="append", choices=sorted(catalogue.BY_NAME),
                        help="only this loss (repeatable)")
    verify.add_argument("--seed", type=int, default=0)
    commands.add_parser("catalogue", help="print the README's table of losses")
    args = parser.parse_args(argv)

    if args.command == "catalogue":
        print(catalogue.markdown_table())
        return 0

    entries = [catalogue.BY_NAME[n] for n in args.loss] if args.loss else list(catalogue.ENTRIES)
    verdicts = [_verify.verify(e, args.seed) for e in entries]
    print(_verify.table(verdicts))
    failed = [v.entry.name for v in verdicts if not v.ok]
    print(f"\n{len(verdicts) - len(failed)} of {len(verdicts)} losses ok" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
