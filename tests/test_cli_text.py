"""What the command line prints: help without reStructuredText markup, each loss name once,
verify's legend, and bench's message when the benchmark scripts are not there (a wheel)."""

from __future__ import annotations

import pathlib

import pytest

from jaxloss import __main__ as cli
from jaxloss import catalogue


@pytest.mark.parametrize("argv", [["--help"], ["verify", "--help"], ["catalogue", "--help"]])
def test_help_has_no_rst_markup(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "``" not in out and ":func:" not in out and ":mod:" not in out


def test_verify_help_lists_each_loss_name_once(capsys):
    with pytest.raises(SystemExit):
        cli.main(["verify", "--help"])
    words = capsys.readouterr().out.replace(",", " ").split()
    for name in catalogue.BY_NAME:
        assert words.count(name) == 1, name


def test_verify_prints_rows_and_a_legend_without_progress_off_a_terminal(capsys):
    assert cli.main(["verify", "--loss", "l2_loss"]) == 0
    captured = capsys.readouterr()
    assert "| l2_loss |" in captured.out and "Columns" in captured.out and "1 of 1 losses ok" in captured.out
    assert captured.err == ""  # the progress line is for terminals only


def test_bench_without_the_scripts_says_where_they_live(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(cli, "BENCHMARKS", pathlib.Path(tmp_path) / "benchmarks")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["bench", "elementwise"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "source checkout" in err and "choose from" not in err


@pytest.mark.parametrize("name, args", [("elementwise", ["--size", "4096", "--repeats", "1"]),
                                        ("cross_entropy", ["--shape", "64", "100", "--repeats", "1"])])
def test_bench_prints_goal_lines_only_at_the_goal_sizes(name, args, capsys):
    assert cli.main(["bench", name, *args]) == 0
    assert "goal" not in capsys.readouterr().out


def test_bench_alone_lists_the_scripts_and_name_help_is_the_scripts(capsys):
    assert cli.main(["bench"]) == 0
    out = capsys.readouterr().out
    assert "elementwise" in out and "``" not in out
    with pytest.raises(SystemExit) as exit_:
        cli.main(["bench", "elementwise", "--help"])
    assert exit_.value.code == 0
    assert "--size" in capsys.readouterr().out  # the script's own option
