"""The reasoning-gym bridge in its own virtual environment (slow; issue 22, part 2.3).

reasoning-gym pins packages that conflict with benchgen's ``lmeval`` extra, so it is never installed
beside the dev extras: this test builds a fresh venv with reasoning-gym 0.1.25 and benchgen (base
install), then checks there that ``reasoning_gym.create_dataset("benchgen_<task>", ...)`` gives
benchgen.procedural's items and that ``score_answer`` is benchgen's exact match (not reasoning-gym's
partial credit).
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

CHECK = textwrap.dedent('''
    import reasoning_gym
    import benchgen, benchgen.reasoning_gym as bridge
    assert bridge.REGISTERED == ["benchgen_addition", "benchgen_induction", "benchgen_khop"], bridge.REGISTERED
    ds = reasoning_gym.create_dataset("benchgen_khop", size=50, seed=4, preset="khop-small", depth=3)
    mine = benchgen.procedural("khop", "khop-small", 4, depth=3, size=50)
    assert len(ds) == 50
    for i in range(50):
        item, ref = ds[i], mine[i]
        assert item["question"] == ref["question"] and item["answer"] == ref["answer"]
        assert item["metadata"]["depth"] == 3 and item["metadata"]["source_dataset"] == "benchgen_khop"
        assert item["metadata"]["source_index"] == i
        assert ds.score_answer(item["answer"], item) == 1.0
        assert ds.score_answer(" " + item["answer"] + "\\n", item) == 1.0   # benchgen's normalisation
        assert ds.score_answer("x" + item["answer"], item) == 0.0           # rg's default would give partial credit
        assert ds.score_answer(None, item) == 0.0
    assert [x["question"] for x in ds] == [mine[i]["question"] for i in range(50)]
    test = reasoning_gym.create_dataset("benchgen_khop", size=200, seed=4, preset="khop-small", split="test")
    train = reasoning_gym.create_dataset("benchgen_khop", size=5000, seed=4, preset="khop-small")
    assert not {x["question"] for x in test} & {x["question"] for x in train}
    add = reasoning_gym.create_dataset("benchgen_addition", size=20, seed=1, depth=5)
    assert all(int(x["answer"]) == sum(int(v) for v in x["question"].rstrip(" =").split(" + ")) for x in add)
    ind = reasoning_gym.create_dataset("benchgen_induction", size=5, seed=2, preset="phop-small")
    assert ind[0]["metadata"]["task"] == "induction"
    import importlib.metadata as md
    print("ok", md.version("reasoning-gym"))
''')


@pytest.mark.slow
def test_bridge_in_its_own_venv(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    install = subprocess.run([py, "-m", "pip", "install", "--quiet", "reasoning-gym==0.1.25", str(REPO)],
                             capture_output=True, text=True, timeout=1800)
    assert install.returncode == 0, install.stderr[-3000:]
    proc = subprocess.run([py, "-c", CHECK], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "ok 0.1.25"
    # the README's reasoning-gym block, as written
    block = next(b for b in re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
                 if "import reasoning_gym" in b)
    run = block + "\nassert rg.score_answer(rg[0]['answer'], rg[0]) == 1.0 and len(rg) == 1000\nprint('readme ok')\n"
    proc = subprocess.run([py, "-c", run], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == "readme ok", proc.stderr[-3000:]
