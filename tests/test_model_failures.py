"""What a user's model does wrong ends in one line (issue 22, items 2, 8 and 12).

- ``python:MODULE:FN`` resolves MODULE from the working directory under the ``benchgen`` script too
  (its sys.path starts at its bin/ folder), and a failed import names the fixes;
- a ``python:`` model calling ``sys.exit(3)`` at import or during predict, or returning a ``margin``
  column of strings, is one ``error:`` line with exit code 2, never benchgen exiting with its code;
- a TorchScript failure names the failing operation and the user's line, not only
  "The following operation failed in the TorchScript interpreter.".
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from fixtures.tasks import khop

from benchgen.cli import main
from benchgen.config import build_config
from benchgen.dataset import load
from benchgen.errors import BenchgenError
from benchgen.evaluators.models.run import build_adapter, run_model

TINY = {"structure": "permutation", "num_entities": 12, "num_relations": 3, "out_degree": 3,
        "ood_fraction": 0.0, "train_hops": "2", "test_hops": "3", "train_per_hop": 40,
        "valid_per_hop": 5, "test_per_hop": 6, "systematic_per_hop": 0, "seed": 5}
BENCHGEN = Path(sys.executable).parent / "benchgen"  # the console script pip installed beside python


@pytest.fixture(scope="module")
def ds_path(tmp_path_factory) -> Path:
    cfg = build_config(khop.KhopConfig, khop.PRESETS, None, dict(TINY))
    return khop.generate(cfg, tmp_path_factory.mktemp("failures") / "khop", progress=False)


def _one_line_error(res) -> str:
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    return lines[0]


@pytest.mark.skipif(not BENCHGEN.exists(), reason="the benchgen console script is not installed beside python")
def test_module_in_the_working_directory_runs_from_the_benchgen_script(ds_path, tmp_path):
    (tmp_path / "my_module.py").write_text("def predict(examples, loops):\n    return ['<e_0>'] * examples.num_rows\n")
    proc = subprocess.run([str(BENCHGEN), "evaluate", str(ds_path), "--model", "python:my_module:predict",
                           "--out", "eval/fn", "--no-plots"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "eval" / "fn" / "results.json").is_file()
    # the rows answered <e_0> are exactly those scored right
    rows = [r for s in load(ds_path).splits if s != "train" for r in load(ds_path).table(s).to_pylist()]
    import json

    cells = json.loads((tmp_path / "eval" / "fn" / "results.json").read_text())["cells"]
    assert sum(c["correct"] for c in cells) == sum(r["answer"] == "<e_0>" for r in rows)
    assert sum(c["n"] for c in cells) == len(rows)


def test_missing_module_names_the_fixes(ds_path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = _one_line_error(CliRunner().invoke(main, ["evaluate", str(ds_path), "--model", "python:nowhere_mod:fn",
                                                     "--out", "o"]))
    assert f"no module named 'nowhere_mod' in the working directory ({tmp_path})" in line
    assert "python:path/to/nowhere_mod.py:fn" in line and "PYTHONPATH" in line
    assert not (tmp_path / "o").exists()


EXIT_SRC = {
    "exit_at_import.py": "import sys\nsys.exit(3)\ndef fn(examples, loops):\n    return []\n",
    "exit_in_predict.py": "import sys\ndef fn(examples, loops):\n    sys.exit(3)\n",
    "string_margin.py": ("import pyarrow as pa\ndef fn(examples, loops):\n    n = examples.num_rows\n"
                         "    return pa.table({'id': examples['id'], 'prediction': ['x'] * n, 'margin': ['big'] * n})\n"),
}


@pytest.mark.parametrize(("name", "expected"), [
    ("exit_at_import.py", "importing {path} failed (called sys.exit(3))"),
    ("exit_in_predict.py", "model python:fn: called sys.exit(3) during predict"),
    ("string_margin.py", "model python:fn: returned a 'margin' column of string; expected numbers"),
])
def test_user_code_failures_are_one_line(ds_path, tmp_path, monkeypatch, name, expected):
    monkeypatch.chdir(tmp_path)  # module names resolve from the working directory
    path = tmp_path / name
    path.write_text(EXIT_SRC[name])
    for spec in (f"python:{path}:fn", f"python:{path.stem}:fn"):  # by file and by module name
        res = CliRunner().invoke(main, ["evaluate", str(ds_path), "--model", spec, "--out", str(tmp_path / "o")])
        sys.modules.pop(path.stem, None)
        line = _one_line_error(res)
        want = expected.format(path=path) if spec.endswith(".py:fn") else expected.replace(
            "importing {path} failed", f"importing '{path.stem}' failed")
        assert want in line, line
        assert not (tmp_path / "o").exists()


class ShapeBug(torch.nn.Module):
    """Embeds ids then applies a linear layer of the wrong input width: fails inside forward."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(64, 8)
        self.lin = torch.nn.Linear(16, 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.emb(x)
        logits = self.lin(h)
        return logits


def test_torchscript_failure_names_the_operation(ds_path, tmp_path):
    path = tmp_path / "bug.pt"
    torch.jit.script(ShapeBug()).save(str(path))
    ds = load(ds_path)
    with pytest.raises(BenchgenError) as info:
        run_model(ds, build_adapter(f"torchscript:{path}", ds), splits=["test_id"], progress=False)
    text = str(info.value)
    assert "\n" not in text
    assert "RuntimeError: mat1 and mat2 shapes cannot be multiplied" in text  # the cause, not the banner
    assert "failing operation `F.linear`" in text
    assert f"called from `logits = self.lin(h)` at {__file__}:" in text
