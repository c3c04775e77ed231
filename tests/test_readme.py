"""The README as a user reads it (issue 22, items 0, 6, 7 and 13): every ``python`` block runs, in
order, in a folder where the quick start ran, with ``datasets`` installed and without it (then the
blocks that ask for it end in one line naming the install command); the quick start and the test
section are one line each, and CI runs exactly the README's test line; vocab.json is what the README
says; the outputs of the README's commands are ignored by git."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from benchgen.cli import main

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


RUNNER = r'''
import json, sys
if sys.argv[1] == "hidden":
    sys.modules["datasets"] = None  # as in a base install
import benchgen
from benchgen.errors import BenchgenError
namespace, outcomes = {}, []
for code in json.loads(open(sys.argv[2]).read()):
    try:
        exec(compile(code, "README.md", "exec"), namespace)
        outcomes.append("ok")
    except BenchgenError as e:
        outcomes.append("error: " + str(e))
print(json.dumps(outcomes))
'''


@pytest.fixture(scope="module")
def quick_start(tmp_path_factory):
    """A folder where the README's quick start ran (`benchgen generate khop --out data/khop`)."""
    work = tmp_path_factory.mktemp("readme")
    line = next(x for x in blocks("bash")[0].splitlines() if x.strip())
    assert line == "pip install -e . && benchgen generate khop --out data/khop"
    here = os.getcwd()
    os.chdir(work)
    try:
        res = CliRunner().invoke(main, line.split("&& benchgen ")[1].split())
    finally:
        os.chdir(here)
    assert res.exit_code == 0, res.output
    return work


@pytest.mark.parametrize("datasets", ["installed", "hidden"])
def test_every_python_block_runs(quick_start, tmp_path, datasets):
    code = [b for b in blocks("python") if "import reasoning_gym" not in b]  # that one: tests/test_reasoning_gym.py
    assert len(code) == len(blocks("python")) - 1 >= 4
    (tmp_path / "blocks.json").write_text(json.dumps(code))
    (tmp_path / "run.py").write_text(RUNNER)
    work = tmp_path / "work"
    shutil.copytree(quick_start, work)
    proc = subprocess.run([sys.executable, str(tmp_path / "run.py"), datasets, str(tmp_path / "blocks.json")],
                          cwd=work, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    outcomes = json.loads(proc.stdout.strip().splitlines()[-1])
    needs = ['output="datasets"' in b for b in code]
    for block, need, outcome in zip(code, needs, outcomes):
        if need and datasets == "hidden":
            assert outcome.startswith("error: output='datasets' needs the datasets package, which is not installed: "
                                      "pip install -e ") and "[datasets]" in outcome and "\n" not in outcome, outcome
        else:
            assert outcome == "ok", (block, outcome)
    assert any(needs)


def test_two_lines_set_everything_up():
    test_line = next(x for x in blocks("bash")[1].splitlines() if x.strip())
    assert test_line == "bash scripts/test.sh"
    ci = [x for x in (REPO / ".ci" / "run").read_text().splitlines() if x.strip() and not x.startswith("#")]
    assert ci[-1] == test_line  # CI runs exactly the README's line
    assert "pip install torch --index-url" not in README.split("## Python API")[0].split("Run the tests")[1][:200]


def test_vocab_json_is_what_the_readme_says(quick_start):
    vocab = json.loads((quick_start / "data" / "khop" / "vocab.json").read_text())
    assert set(vocab) == {"tokens", "joiner", "pad_id"}
    assert vocab["tokens"][vocab["pad_id"]] == "<pad>" and vocab["joiner"] == ""
    assert '{"tokens": [...], "joiner": "", "pad_id": 0}' in README
    import pyarrow.parquet as pq

    row = pq.read_table(next((quick_start / "data" / "khop" / "data").glob("test_id-*.parquet"))).slice(0, 1).to_pylist()[0]
    assert vocab["joiner"].join(vocab["tokens"][i] for i in row["input_ids"]) == row["prompt"]


def test_readme_outputs_are_ignored_by_git():
    named = set(re.findall(r"(?:--out|--output_path) ([\w.-]+)", README))  # what the README's commands write
    assert {"data", "eval", "runs", "floors", "lm-tasks", "lm-out", "board.html", "board.md", "preds.parquet"} <= {
        n.split("/")[0] for n in re.findall(r"(?:--out|--output_path) ([\w./-]+)", README)}, named
    outputs = ["data/khop", "data/khop-lm-eval", "eval/looped/results.json", "runs/looped", "floors/khop",
               "lm-tasks", "lm-out", "board.html", "board.md", "board.csv", "preds.parquet", "preds.jsonl"]
    proc = subprocess.run(["git", "check-ignore", "--no-index", *outputs], cwd=REPO, capture_output=True, text=True)
    assert sorted(proc.stdout.split()) == sorted(outputs), proc.stdout + proc.stderr
    assert "| `bench` | reasoning-gym |" in README
