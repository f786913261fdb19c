"""Command line: ``python -m jaxloss verify [--loss NAME] [--inputs] [--jobs N]``, ``catalogue`` and ``bench NAME``.

``verify`` runs every catalogue entry through the gradient checker (reverse and forward
mode against autodiff of the formula and float64 finite differences) and the
low-precision check (float32 and bfloat16 inputs against float64), prints each loss's row
as it finishes (with a progress line on a terminal), a legend of the tolerances, and exits
with status 1 if any entry fails; ``--jobs N`` checks N losses at a time in worker processes
(the rows are the same, printed in the same order).  ``verify --inputs`` instead tries each entry's bad inputs
(:mod:`jaxloss._inputs`: wrong ranks and shapes, integer logits, float class ids,
non-boolean masks, negative options), prints a table of the cases, and exits with status 1
if any is not rejected at trace time with an error naming the argument.  ``catalogue``
prints the README's table of losses, generated from ``src/jaxloss/catalogue/``.  ``bench NAME
[ARGS]`` runs ``benchmarks/NAME.py`` of a source checkout with its own arguments
(``--help`` lists them); the scripts are not part of an installed wheel.  ``bench all [--quick]
[--scale S] [--out DIR] [--skip NAME,...]`` runs every script on the default backend (each
script's own quick run with ``--quick``) and writes each report, headed by the device, jax
version and command, to ``DIR/<script>-<backend>.md`` (``DIR``: ``benchmarks/results``),
replacing the file there; it exits with status 1 if a script failed (the others still run).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import importlib.util
import itertools
import multiprocessing
import os
import pathlib
import sys
import time
import traceback

from jaxloss import _inputs, _verify, catalogue

BENCHMARKS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"
DESCRIPTION = ("Check, list and benchmark jaxloss's losses: verify (derivatives and precision of every loss), "
               "catalogue (the table of losses), bench (a benchmark script of a source checkout).")


# Scripts without the shared --quick/--scale/--write options: their quick run's arguments at a scale.
_QUICK_ARGS = {"linear_cross_entropy": lambda scale: [
    "--repeats", "3", "--size", *(str(max(4, round(n * scale))) for n in (4096, 512, 32000))]}


def _benchmarks() -> list[str]:
    return sorted(p.stem for p in BENCHMARKS.glob("[!_]*.py")) if BENCHMARKS.is_dir() else []


def _load(name: str):
    """``benchmarks/NAME.py`` as a module, registered under its name (for what resolves the module
    by name: dataclasses, pickle)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None  # the file exists: listed by _benchmarks()
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _bench_all(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxloss bench all",
                                     description="Run every benchmark script on the default backend and write "
                                                 "each report to DIR/<script>-<backend>.md.")
    parser.add_argument("--quick", action="store_true", help="each script's quick run (fewer sizes and repeats)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every problem size by this "
                        "(default 1; a CPU smoke run: 0.01)")
    parser.add_argument("--out", default=str(BENCHMARKS / "results"), metavar="DIR",
                        help="where to write the reports (default: benchmarks/results; files are replaced)")
    parser.add_argument("--skip", default="", metavar="NAME,...", help="scripts not to run")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    if skip - set(_benchmarks()):
        parser.error(f"unknown script in --skip: {', '.join(sorted(skip - set(_benchmarks())))}")
    done, failed, start = [], [], time.perf_counter()
    for name in (n for n in _benchmarks() if n not in skip):
        print(f"\n## bench {name}\n", flush=True)
        began, module = time.perf_counter(), _load(name)
        shared = hasattr(module, "add_run_options")  # the options of benchmarks/_timing.py
        script_argv = ((["--quick"] if args.quick else []) + ["--scale", str(args.scale)] if shared
                       else _QUICK_ARGS[name](args.scale) if args.quick or args.scale != 1 else [])
        try:
            report = module.main(script_argv + (["--write", args.out] if shared else []))
            if not shared:
                sys.modules["_timing"].write_report(name, report, args.out, script_argv)  # the script imported it
        except Exception:  # one script's failure is reported; the others still run
            traceback.print_exc()
            failed.append(name)
            continue
        done.append(f"{name} ({time.perf_counter() - began:.0f} s)")
    print(f"\nbench all: {len(done)} of {len(done) + len(failed)} scripts in {time.perf_counter() - start:.0f} s, "
          f"reports in {args.out}: {', '.join(done)}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def _progress(i: int, total: int, name: str) -> None:
    """A progress line on stderr, rewritten in place, when stderr is a terminal."""
    if sys.stderr.isatty():
        done = 30 * i // total
        end = "\n" if i == total else ""
        sys.stderr.write(f"\r\033[K[{'#' * done}{'.' * (30 - done)}] {i}/{total} {name}{end}")
        sys.stderr.flush()


@contextlib.contextmanager
def _row_maker(jobs: int):
    """``rows(names, seed)``: each loss's verify row and verdict, in order, computed here
    (``jobs == 1``) or by ``jobs`` spawned worker processes (JAX does not survive a fork)."""
    jobs = jobs or os.cpu_count() or 1
    if jobs == 1:
        yield lambda names, seed: (_verify.verify_row(n, seed) for n in names)
        return
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
        yield lambda names, seed: pool.map(_verify.verify_row, names, itertools.repeat(seed))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxloss", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    names = sorted(catalogue.BY_NAME)
    verify = commands.add_parser("verify", help="check every loss's derivatives and precision",
                                 description="Check every loss's derivatives and precision (or, with --inputs, "
                                             "that bad inputs raise), one table row per loss.")
    verify.add_argument("--loss", action="append", choices=names, metavar="NAME",
                        help=f"only this loss (repeatable), one of: {', '.join(names)}")
    verify.add_argument("--seed", type=int, default=0)
    verify.add_argument("--inputs", action="store_true", help="try bad inputs instead: each must raise")
    verify.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="check N losses at a time in worker processes (0: one per CPU core); rows print in "
                             "catalogue order")
    commands.add_parser("catalogue", help="print the README's table of losses")
    bench = commands.add_parser("bench", help="run a benchmark script of a source checkout's benchmarks/",
                                add_help=False)  # NAME --help is the script's
    bench.add_argument("name", metavar="NAME", nargs="?", help="all (every script), or a script of benchmarks/: " + (
        ", ".join(_benchmarks()) or f"none found ({BENCHMARKS} does not exist: the scripts live in the "
        "source repository's benchmarks/ folder, not in an installed wheel)"))
    args, rest = parser.parse_known_args(argv)

    if args.command == "catalogue":
        print(catalogue.markdown_table())
        return 0
    if args.command == "bench":
        if args.name is None:
            bench.print_help()
            print("\nNAME --help lists the script's own options; all --help those of bench all.")
            return 0
        if args.name == "all" and _benchmarks():
            return _bench_all(rest)
        if args.name not in _benchmarks():
            where = f"in {BENCHMARKS}: {', '.join(_benchmarks())}" if _benchmarks() else (
                f"{BENCHMARKS} does not exist: run bench from a source checkout (git clone, pip install -e .); "
                "the benchmark scripts are not part of an installed wheel")
            parser.error(f"no benchmark script {args.name!r}; the scripts are {where}")
        _load(args.name).main(rest)
        return 0
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")

    entries = [catalogue.BY_NAME[n] for n in args.loss] if args.loss else list(catalogue.ENTRIES)
    if args.inputs:
        outcomes = _inputs.check(entries, args.seed)
        print(_inputs.table(outcomes))
        accepted = [o for o in outcomes if not o.ok]
        print(f"\n{len(outcomes) - len(accepted)} of {len(outcomes)} bad-input cases rejected"
              + (f"; not rejected: {', '.join(f'{o.case.loss} ({o.case.name})' for o in accepted)}" if accepted else ""))
        return 1 if accepted else 0
    print(_verify.TABLE_HEAD, _verify.TABLE_RULE, sep="\n", flush=True)
    names = [e.name for e in entries]
    failed = []
    _progress(0, len(names), names[0])
    with _row_maker(args.jobs) as rows:
        for i, (name, (row, ok)) in enumerate(zip(names, rows(names, args.seed)), 1):
            print(row, flush=True)
            _progress(i, len(names), names[i] if i < len(names) else "done")
            failed += [] if ok else [name]
    print("\n" + _verify.legend())
    print(f"\n{len(names) - len(failed)} of {len(names)} losses ok"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
