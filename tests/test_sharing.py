"""Reports a person would share: HTML without Markdown artefacts, readable tables, tidy names and CSV."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from benchgen.cli import main
from benchgen.cli.common import spec_name as _spec_name

KHOP = ["--structure", "permutation", "--num-entities", "16", "--num-relations", "3", "--out-degree", "3",
        "--ood-fraction", "0.25", "--train-hops", "2", "--test-hops", "3,4", "--train-per-hop", "40",
        "--valid-per-hop", "5", "--test-per-hop", "6", "--systematic-per-hop", "6", "--seed", "2"]


@pytest.fixture(scope="module")
def board(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("share")
    run = CliRunner()
    assert run.invoke(main, ["generate", "khop", *KHOP, "--out", str(root / "d")]).exit_code == 0
    for name, noise, loops in (("sweep", "0.2", ["--loops", "1-4"]), ("flat", "0.5", [])):
        res = run.invoke(main, ["predict-oracle", str(root / "d"), "--noise", noise, *loops,
                                "--out", str(root / f"{name}.parquet")])
        assert res.exit_code == 0, res.output
        res = run.invoke(main, ["evaluate", str(root / "d"), "--predictions", str(root / f"{name}.parquet"),
                                "--out", str(root / "eval" / name), "--html"])
        assert res.exit_code == 0, res.output
    res = run.invoke(main, ["leaderboard", str(root / "eval" / "sweep"), str(root / "eval" / "flat"),
                            "--out", str(root / "board.html"), "--out", str(root / "board.csv")])
    assert res.exit_code == 0, res.output
    return root


def test_html_has_no_markdown_backticks_and_left_aligned_text(board):
    report = (board / "eval" / "sweep" / "report.html").read_text()
    page = (board / "board.html").read_text()
    for html in (report, page):
        assert "`" not in re.sub(r"<script>.*?</script>", "", html, flags=re.S)
    assert "<code>" in page
    # the split column (words) is left-aligned, numbers stay right-aligned
    assert re.search(r"<td class='text'>test_depth</td>", report)
    assert not re.search(r"<td class='text'>[\d.]+</td>", report)
    assert "text-align: left" in page and "td:last-child" in page
    assert "<img alt='Accuracy vs depth'" in report and "<img alt='Accuracy by depth × loops'" in report


def test_csv_numbers_are_rounded(board):
    rows = list(csv.DictReader(io.StringIO((board / "board.csv").read_text())))
    assert len(rows) == 2
    numbers = [v for r in rows for k, v in r.items() if k not in ("model", "source", "coverage", "loops_source") and v]
    assert numbers and all(re.fullmatch(r"-?\d+(\.\d{1,4})?", v) for v in numbers), numbers


def test_default_model_names_have_no_paths():
    assert _spec_name("hf:/abs/ckpts/tiny-gpt2/") == "tiny-gpt2"
    assert _spec_name("reference:runs/looped") == "looped"
    assert _spec_name("torchscript:/x/model.pt") == "model.pt"
    assert _spec_name("python:my_module:predict") == "my_module:predict"
    assert _spec_name("python:/home/me/fn.py:predict") == "fn.py:predict"
