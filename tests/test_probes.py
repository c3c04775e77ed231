"""Per-loop probes (logit lens) for k-hop (#20): the heatmap numbers of a reference model trained a few
steps equal a direct computation (the model's own per-iteration readout, compared with each row's
chain in a plain loop); models without a readout say so."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from fixtures.tasks import khop

from benchgen.cli import main
from benchgen.config import build_config
from benchgen.dataset import load
from benchgen.evaluators.probes import run_probes

TINY = {"structure": "permutation", "num_entities": 12, "num_relations": 3, "out_degree": 3,
        "ood_fraction": 0.0, "train_hops": "2", "test_hops": "3,4", "train_per_hop": 60,
        "valid_per_hop": 4, "test_per_hop": 12, "systematic_per_hop": 0, "seed": 4}
LOOPS = [1, 2, 3, 5]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    from benchgen.reference_models.config import ModelConfig, TrainConfig
    from benchgen.reference_models.train import train

    root = tmp_path_factory.mktemp("probes")
    ds = khop.generate(build_config(khop.KhopConfig, khop.PRESETS, None, dict(TINY)), root / "khop", progress=False)
    mc = ModelConfig(d_model=32, n_heads=4, n_block=1, loops=2, positions="learned", kernel="torch")
    tc = TrainConfig(steps=30, batch_size=32, lr=1e-2, warmup_steps=2, eval_every=30, log_every=10, eval_examples=0,
                     threads=1, seed=0)
    return ds, train(ds, root / "run", mc, tc, progress=False)


def _direct(ds_path: Path, run: Path, split: str) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per depth k: (shares (loops, k) of rows whose top-1 after iteration t is the entity after hop j,
    shares (loops,) of rows whose top-1 is on none of the chain), one row at a time."""
    from benchgen.reference_models import checkpoint as ckpt

    model, _ = ckpt.load_model(run)
    ds = load(ds_path)
    tokens = ds.vocab.tokens
    grids: dict[int, list] = {}
    for r in ds.table(split).to_pylist():
        with torch.no_grad():
            per_t = model(torch.tensor([r["input_ids"]]), loops=max(LOOPS), readout="all")[:, 0, -1]
        chain = [f"<e_{b}>" for b in r["bridges"]] + [r["answer"]]
        hits = np.array([[tokens[int(per_t[t - 1].argmax())] == e for e in chain] for t in LOOPS], dtype=float)
        grids.setdefault(r["depth"], []).append(hits)
    return {k: (np.mean(g, axis=0), np.mean([~h.any(axis=1) for h in g], axis=0)) for k, g in grids.items()}


def test_probe_heatmap_equals_a_direct_computation(trained):
    ds_path, run = trained
    probes = run_probes(ds_path, f"reference:{run}", loops=LOOPS, splits=["test_depth"], batch_size=7)
    assert probes["available"] and probes["loops"] == LOOPS
    direct = _direct(ds_path, run, "test_depth")
    got = {d["depth"]: d for d in probes["per_split"]["test_depth"]}
    assert set(got) == set(direct) == {3, 4}
    for k, (grid, neither) in direct.items():
        assert got[k]["hops"] == [f"hop {j}" for j in range(1, k)] + ["answer"]
        assert np.allclose(np.array(got[k]["share"], dtype=float), grid, atol=1e-12)
        assert np.allclose(np.array(got[k]["neither"], dtype=float), neither, atol=1e-12)
        assert got[k]["n"] == 12
    assert any(np.array(d["share"], dtype=float).sum() > 0 for d in got.values())  # the model hits the chain


def test_evaluate_stores_probes_and_draws_the_heatmap(trained, tmp_path):
    ds_path, run = trained
    out = tmp_path / "ev"
    r = CliRunner().invoke(main, ["evaluate", str(ds_path), "--model", f"reference:{run}", "--loops", "1-3",
                                  "--splits", "test_id,test_depth", "--no-progress", "--out", str(out)])
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    assert res["metrics"]["probes"]["available"]
    assert (out / "plots" / "probes_heatmap.png").is_file() and (out / "plots" / "compute_accuracy.png").is_file()
    assert "Per-loop probes" in (out / "report.md").read_text()
    # re-scoring the written predictions reproduces the probes (lens_top1 travels in the file)
    r = CliRunner().invoke(main, ["evaluate", str(ds_path), "--predictions", str(out / "predictions.parquet"),
                                  "--no-plots", "--out", str(tmp_path / "again")])
    assert r.exit_code == 0, r.output
    again = json.loads((tmp_path / "again" / "results.json").read_text())["metrics"]["probes"]
    assert again == res["metrics"]["probes"]


def test_models_without_a_readout_say_so(trained, tmp_path):
    ds_path, run = trained
    out = tmp_path / "ev"
    r = CliRunner().invoke(main, ["evaluate", str(ds_path), "--model", f"reference:{run}", "--loops", "1-2",
                                  "--splits", "test_depth", "--no-progress", "--no-plots", "--out", str(out)])
    assert r.exit_code == 0, r.output
    import pyarrow.parquet as pq

    stripped = tmp_path / "no-lens.parquet"
    pq.write_table(pq.read_table(out / "predictions.parquet").drop_columns(["lens_top1"]), stripped)
    r = CliRunner().invoke(main, ["evaluate", str(ds_path), "--predictions", str(stripped), "--no-plots",
                                  "--out", str(tmp_path / "x")])
    assert r.exit_code == 0, r.output
    probes = json.loads((tmp_path / "x" / "results.json").read_text())["metrics"]["probes"]
    assert not probes["available"] and probes["reason"].startswith("not available for this model")
    assert "not available for this model" in (tmp_path / "x" / "report.md").read_text()
    # an answer-position readout without per-position readouts (as hf models give): no wavefront, said so
    import pyarrow as pa

    table = pq.read_table(out / "predictions.parquet")
    nulls = table.set_column(table.schema.get_field_index("lens_positions"), "lens_positions",
                             pa.nulls(table.num_rows, pa.list_(pa.int32())))
    pq.write_table(nulls, tmp_path / "no-positions.parquet")
    r = CliRunner().invoke(main, ["evaluate", str(ds_path), "--predictions", str(tmp_path / "no-positions.parquet"),
                                  "--no-plots", "--out", str(tmp_path / "y")])
    assert r.exit_code == 0, r.output
    probes = json.loads((tmp_path / "y" / "results.json").read_text())["metrics"]["probes"]
    assert probes["available"] and not probes["wavefront"]["available"]


def test_wavefront_equals_a_direct_per_position_computation(trained):
    """The per-position probe (#21): at input position j (token r_j) after loop t, the share of rows whose
    readout is the entity after hop j, recomputed row by row from the model's own readout at every position;
    re-scoring the saved predictions file reproduces it."""
    from benchgen.reference_models import checkpoint as ckpt

    ds_path, run = trained
    probes = run_probes(ds_path, f"reference:{run}", loops=LOOPS, splits=["test_depth", "test_id"], batch_size=5)
    model, _ = ckpt.load_model(run)
    ds = load(ds_path)
    tokens = ds.vocab.tokens
    for split in ("test_depth", "test_id"):
        direct: dict[int, list] = {}
        for r in ds.table(split).to_pylist():
            with torch.no_grad():
                per_t = model(torch.tensor([r["input_ids"]]), loops=max(LOOPS), readout="all")[:, 0]
            chain = [f"<e_{b}>" for b in r["bridges"]] + [r["answer"]]
            direct.setdefault(r["depth"], []).append(
                [[tokens[int(per_t[t - 1, j].argmax())] == chain[j - 1] for j in range(1, len(chain) + 1)]
                 for t in LOOPS])
        got = {d["depth"]: d for d in probes["wavefront"]["per_split"][split]}
        assert set(got) == set(direct)
        for k, rows in direct.items():
            share = np.mean(np.array(rows, dtype=float), axis=0)
            assert np.allclose(np.array(got[k]["share"], dtype=float), share), (split, k)
            first = [next((t for t, v in zip(LOOPS, share[:, c]) if v >= 0.5), None) for c in range(k)]
            assert got[k]["first_loop_over_half"] == first and got[k]["n"] == len(rows)
    out = ds_path.parent / "wf-eval"
    res = CliRunner().invoke(main, ["evaluate", str(ds_path), "--model", f"reference:{run}", "--loops", "1,2,3,5",
                                    "--splits", "test_depth,test_id", "--out", str(out)])
    assert res.exit_code == 0, res.output
    saved = json.loads((out / "results.json").read_text())["metrics"]["probes"]["wavefront"]
    assert saved["per_split"] == probes["wavefront"]["per_split"]
    assert (out / "plots" / "wavefront_heatmap.png").exists()
    again = CliRunner().invoke(main, ["evaluate", str(ds_path), "--predictions", str(out / "predictions.parquet"),
                                      "--no-plots", "--out", str(ds_path.parent / "wf-rescore")])
    assert again.exit_code == 0, again.output
    rescored = json.loads((ds_path.parent / "wf-rescore" / "results.json").read_text())["metrics"]["probes"]
    assert rescored["wavefront"]["per_split"] == saved["per_split"]
