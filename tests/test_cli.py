"""The command line: verify's table and exit status, the catalogue table, bench."""

import dataclasses

import jax
import jax.numpy as jnp
import pytest

from jaxloss import __main__ as cli
from jaxloss import catalogue
from jaxloss.gradients import hand_derivative, tangent_sum


def test_verify_prints_a_row_per_loss_and_exits_0(capsys):
    assert cli.main(["verify", "--loss", "huber_loss", "--loss", "hinge_loss"]) == 0
    out = capsys.readouterr().out
    rows = [line.split("|") for line in out.splitlines() if line.startswith("| ")][1:]  # below the header
    assert [(r[1].strip(), r[-2].strip()) for r in rows] == [("huber_loss", "ok"), ("hinge_loss", "ok")]
    assert "2 of 2 losses ok" in out


@pytest.mark.full
def test_verify_jobs_prints_the_same_rows_in_catalogue_order(capsys):
    names = ["hinge_loss", "huber_loss", "l2_loss"]
    argv = ["verify"] + [a for n in names for a in ("--loss", n)]
    assert cli.main(argv) == 0
    serial = capsys.readouterr().out
    assert cli.main(argv + ["--jobs", "2"]) == 0
    parallel = capsys.readouterr().out
    rows = lambda out: [line for line in out.splitlines() if line.startswith("| ")]  # noqa: E731
    assert [r.split("|")[1].strip() for r in rows(parallel)[1:]] == names  # below the header
    assert rows(parallel) == rows(serial)  # the same numbers: each row is computed the same way
    assert "3 of 3 losses ok" in parallel


@hand_derivative(lambda p, t, out, res: tangent_sum((3 * p.x, t.x)))  # d(x²)/dx is 2x, not 3x
def _wrong_square(x, y, *, where=None):
    return jnp.square(x) + 0 * y


def test_verify_exits_1_and_names_a_loss_with_a_wrong_rule(capsys, monkeypatch):
    entry = dataclasses.replace(catalogue.BY_NAME["squared_error"], fn=_wrong_square)
    monkeypatch.setitem(catalogue.BY_NAME, "_wrong_square", entry)
    assert cli.main(["verify", "--loss", "_wrong_square"]) == 1
    out = capsys.readouterr().out
    assert "| _wrong_square |" in out and "FAIL" in out and "failed: _wrong_square" in out


def test_catalogue_prints_the_generated_table(capsys):
    assert cli.main(["catalogue"]) == 0
    assert capsys.readouterr().out.strip() == catalogue.markdown_table()


def test_bench_runs_a_benchmark_script_with_its_arguments(capsys):
    assert cli.main(["bench", "elementwise", "--size", "4096", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    for loss in ("huber_loss", "sigmoid_binary_cross_entropy"):
        assert [line.split("|")[2].strip() for line in out.splitlines() if line.startswith(f"| {loss} |")] == [
            "jaxloss", "optax", "autodiff"]


@pytest.mark.full  # the benchmark scripts, not the library: full tier
@pytest.mark.parametrize("name, args, rows", [
    ("cross_entropy", ["--shape", "8", "16", "--repeats", "1"], ["| jaxloss |", "| optax |", "| autodiff |"]),
    ("embedding", ["--repeats", "1", "--angular", "8", "4", "16", "--batch-triplet", "8", "4", "--triplet", "8", "4"],
     ["### angular_margin_loss", "### batch_triplet_loss (mining='semihard'", "### triplet_margin_loss", "| optax |"]),
    ("contrastive", ["--ns", "64", "--ntxent-ns", "32", "--block-size", "16", "--repeats", "1"],
     ["| 64 |", "| 32 |"]),
    ("linear_cross_entropy", ["--size", "64", "8", "300", "--block-size", "128", "--repeats", "1"],
     ["| jaxloss | 64×8×300 |", "| optax | 64×8×300 |", "| autodiff | 64×8×300 |"]),
    ("catalogue", ["--only", "huber_loss,softmax_cross_entropy", "--scale", "0.01", "--repeats", "1",
                   "--dtype", "float32"],
     ["| huber_loss | 41×41 |", "| softmax_cross_entropy | 41×320 |", "| softmax_cross_entropy | 4×10 |"]),
])
def test_every_benchmark_script_runs_on_a_small_problem(capsys, name, args, rows):
    assert cli.main(["bench", name, *args]) == 0
    out = capsys.readouterr().out
    assert all(row in out for row in rows), out


@pytest.mark.full
def test_bench_all_quick_writes_a_report_per_script(capsys, tmp_path):
    # A smoke run at tiny sizes: the scripts with the shared options (--quick, --scale, --write) and one
    # without them (linear_cross_entropy, run with bench all's own quick arguments); the rest are skipped
    # for CI's time (each runs on a small problem above).
    run = ["cross_entropy", "ctc", "linear_cross_entropy"]
    skip = [n for n in cli._benchmarks() if n not in run]
    argv = ["bench", "all", "--quick", "--scale", "0.01", "--out", str(tmp_path), "--skip", ",".join(skip)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "bench all: 3 of 3 scripts" in out
    backend = jax.default_backend()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{n}-{backend}.md" for n in run]
    for name in run:
        text = (tmp_path / f"{name}-{backend}.md").read_text()
        assert text.startswith(f"# {name}, {backend}\n") and f"jax {jax.__version__}" in text
        assert "| jaxloss" in text
    assert "logits (41, 320) float32" in (tmp_path / f"cross_entropy-{backend}.md").read_text()  # scaled


def test_bench_all_names_a_failing_script_and_exits_1(capsys, tmp_path, monkeypatch):
    def broken(argv=None):
        raise RuntimeError("broken script")

    module = cli._load("cross_entropy")
    monkeypatch.setattr(module, "main", broken)
    monkeypatch.setattr(cli, "_load", lambda name: module)
    skip = [n for n in cli._benchmarks() if n != "cross_entropy"]
    assert cli.main(["bench", "all", "--out", str(tmp_path), "--skip", ",".join(skip)]) == 1
    assert "failed: cross_entropy" in capsys.readouterr().out and not list(tmp_path.iterdir())


def test_verify_inputs_prints_a_row_per_case_and_exits_0(capsys):
    assert cli.main(["verify", "--inputs", "--loss", "huber_loss", "--loss", "ctc_loss"]) == 0
    out = capsys.readouterr().out
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in out.splitlines() if line.startswith("| ")][1:]
    assert ["huber_loss", "negative delta", "delta", "ValueError", "ok"] in rows
    assert ["ctc_loss", "float labels", "labels", "TypeError", "ok"] in rows
    assert {r[0] for r in rows} == {"huber_loss", "ctc_loss"} and all(r[-1] == "ok" for r in rows)
    assert f"{len(rows)} of {len(rows)} bad-input cases rejected" in out


def _unchecked_huber(predictions, targets, *, delta=1.0, where=None):
    return jnp.abs(predictions - targets) * delta


def test_verify_inputs_exits_1_and_names_a_case_not_rejected(capsys, monkeypatch):
    entry = dataclasses.replace(catalogue.BY_NAME["huber_loss"], fn=_unchecked_huber)
    monkeypatch.setitem(catalogue.BY_NAME, "_unchecked_huber", entry)
    assert cli.main(["verify", "--inputs", "--loss", "_unchecked_huber"]) == 1
    out = capsys.readouterr().out
    assert "| _unchecked_huber | negative delta | delta | nothing | FAIL |" in out
    assert "not rejected: _unchecked_huber (predictions without its leading axis)" in out
