"""Loop knobs on real looped Hugging Face architectures (#20): ``--loop-config`` on transformers'
``Inkling2LoopForCausalLM`` and ``--loop-kwarg`` on a Huginn-interface model.

At every swept T, benchgen's batched, left-padded, cached generation must equal an independent
greedy decode (unpadded, no cache, the config or keyword set to T directly), and T must matter.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from fixtures.looped_hf import greedy_reference, register_huginn, tiny_huginn, tiny_inkling2
from fixtures.tasks import khop

from benchgen.cli import main
from benchgen.config import build_config
from benchgen.dataset import load

transformers = pytest.importorskip("transformers")
TINY = {"structure": "permutation", "num_entities": 16, "num_relations": 4, "out_degree": 4,
        "ood_fraction": 0.2, "train_hops": "2", "test_hops": "3,4", "train_per_hop": 40,
        "valid_per_hop": 4, "test_per_hop": 6, "systematic_per_hop": 6, "seed": 3}
SPLITS = ["test_id", "test_depth"]
LIMIT = 4


def _has_inkling() -> bool:
    try:
        from transformers import Inkling2LoopForCausalLM  # noqa: F401
    except ImportError:
        return False
    return True


needs_inkling = pytest.mark.skipif(not _has_inkling(), reason=f"transformers {transformers.__version__} has no "
                                   "Inkling2LoopForCausalLM (added in 5.x)")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one torch thread is ~10x faster than several contending ones on a shared CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ds_path(tmp_path_factory) -> Path:
    cfg = build_config(khop.KhopConfig, khop.PRESETS, None, dict(TINY))
    return khop.generate(cfg, tmp_path_factory.mktemp("looped") / "khop", progress=False)


@pytest.fixture(scope="module")
def inkling_dir(ds_path, tmp_path_factory) -> Path:
    return tiny_inkling2(load(ds_path), tmp_path_factory.mktemp("ink") / "inkling2-tiny")


def _evaluate(ds_path, spec, out, *knob) -> tuple[int, str]:
    r = CliRunner().invoke(main, ["evaluate", str(ds_path), "--model", spec, *knob, "--splits", ",".join(SPLITS),
                                  "--limit", str(LIMIT), "--batch-size", "16", "--no-progress", "--no-plots",
                                  "--out", str(out)])
    return r.exit_code, r.output


def _rows(ds_path) -> list[dict]:
    ds = load(ds_path)
    return [r for s in SPLITS for r in ds.table(s).slice(0, LIMIT).to_pylist()]


def _check_against_reference(out: Path, rows, decode) -> dict[int, list[str]]:
    """benchgen's predictions at each T equal ``decode(prompts, T)``; returns them by T."""
    preds = pq.read_table(out / "predictions.parquet").to_pylist()
    by_t: dict[int, list[str]] = {}
    for T in (1, 2, 3):
        got = {p["id"]: p["prediction"] for p in preds if p["loops"] == T}
        by_t[T] = [got[r["id"]] for r in rows]
        assert by_t[T] == decode([r["prompt"] for r in rows], T), f"T={T}"
    assert by_t[1] != by_t[3], "the loop count changed no prediction"
    return by_t


@needs_inkling
def test_inkling2_loop_config_sweep_matches_independent_greedy(ds_path, inkling_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    code, output = _evaluate(ds_path, f"hf:{inkling_dir}", tmp_path / "ink", "--loop-config", "loop_num_passes",
                             "--loops", "1-3")
    assert code == 0, output
    model = AutoModelForCausalLM.from_pretrained(inkling_dir, local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(inkling_dir, local_files_only=True)

    def decode(prompts, T):
        model.config.loop_num_passes = T
        return greedy_reference(model, tok, prompts, steps=2)

    _check_against_reference(tmp_path / "ink", _rows(ds_path), decode)
    results = json.loads((tmp_path / "ink" / "results.json").read_text())
    assert results["model"]["loop_config"] == "loop_num_passes"
    assert [c["loops"] for c in results["cells"]].count(3) == len({(c["split"], c["depth"]) for c in results["cells"]})


@needs_inkling
def test_inkling2_config_is_restored_after_each_loop_count(ds_path, inkling_dir):
    from benchgen.evaluators.models.run import build_adapter, run_model

    ds = load(ds_path)
    adapter = build_adapter(f"hf:{inkling_dir}", ds, loop_config="loop_num_passes")
    run_model(ds, adapter, splits=["test_depth"], loops=[1, 5], limit=2, progress=False)
    assert adapter.model.config.loop_num_passes == 3  # the saved value, set back after T=5


def test_huginn_num_steps_sweep_matches_independent_greedy(ds_path, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ckpt = tiny_huginn(load(ds_path), tmp_path / "huginn")
    code, output = _evaluate(ds_path, f"hf:{ckpt}", tmp_path / "h", "--loop-kwarg", "num_steps", "--loops", "1-3")
    assert code == 0, output
    register_huginn()
    model = AutoModelForCausalLM.from_pretrained(ckpt, local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(ckpt, local_files_only=True)
    _check_against_reference(tmp_path / "h", _rows(ds_path),
                             lambda prompts, T: greedy_reference(model, tok, prompts, steps=2, num_steps=T))


@needs_inkling
@pytest.mark.parametrize("knob, message", [
    (["--loop-config", "loop_gate_rank", "--loops", "1,3"],  # read only when the model is built
     r"^error: --loop-config loop_gate_rank: the model's logits are identical at T=1 and T=3 on a probe batch"),
    (["--loop-config", "initializer_range", "--loops", "1,3"],
     r"^error: --loop-config initializer_range: the config refuses the loop count 1"),
    (["--loop-config", "no_such_field", "--loops", "1-3"],
     r"^error: --loop-config no_such_field: the model's config has no field 'no_such_field'"),
    (["--loop-config", "loop_num_passes", "--loop-kwarg", "num_steps", "--loops", "1-3"],
     r"^error: --loop-config and --loop-kwarg: give one loop knob, not both"),
    (["--loops", "1-3"], r"^error: model hf:inkling2-tiny: does not support loops"),
])
def test_bad_loop_knobs_are_one_line_errors(ds_path, inkling_dir, tmp_path, knob, message):
    import re

    code, output = _evaluate(ds_path, f"hf:{inkling_dir}", tmp_path / "bad", *knob)
    assert code == 2, output
    assert len(output.strip().splitlines()) == 1 and re.search(message, output), output
    assert not (tmp_path / "bad").exists()
