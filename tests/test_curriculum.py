"""The depth curriculum (LTG): advance on scripted accuracies, batches stay within the current hop, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures.tasks import khop as khop_task

from benchgen.errors import BenchgenError, ConfigError
from benchgen.reference_models import train as train_mod
from benchgen.reference_models.config import ModelConfig, TrainConfig, resolve
from benchgen.reference_models.train import Curriculum, balanced_rows, eval_loops, sample_loops
from benchgen.tasks.khop.config import KhopConfig

MODEL = ModelConfig(d_model=16, n_heads=2, n_block=1, loops=3, positions="rotary", kernel="torch")


def ccfg(**kw) -> TrainConfig:
    base = dict(steps=12, batch_size=16, lr=1e-3, warmup_steps=0, eval_every=0, log_every=1, eval_examples=0,
                threads=1, seed=0, curriculum=True, curriculum_start=2, curriculum_every=2,
                curriculum_threshold=0.9, loops_sampling="depth", loops_extra=2)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def khop(tmp_path_factory) -> Path:
    cfg = KhopConfig(structure="permutation", num_entities=12, num_relations=3, out_degree=3, ood_fraction=0.0,
                     train_hops=(2, 3, 4), test_hops=(5,), train_per_hop=40, valid_per_hop=8, test_per_hop=8,
                     systematic_per_hop=0, seed=0)
    return khop_task.generate(cfg, tmp_path_factory.mktemp("k") / "khop", progress=False)


def test_curriculum_unit_advances_only_above_threshold():
    depth = torch.tensor([1, 1, 2, 2, 3, 4, 4])
    cur = Curriculum(ccfg(), depth, None, 2)
    assert (cur.hop, cur.max_hop) == (2, 4)
    assert cur.active().tolist() == [0, 1, 2, 3]
    assert not cur.update(0.9)  # must exceed, as LTG's "> 0.95"
    assert cur.update(0.91) and cur.hop == 3 and cur.active().tolist() == [0, 1, 2, 3, 4]
    assert cur.update(1.0) and cur.hop == 4 and cur.active() is None and not cur.due(100)
    assert not cur.update(1.0) and cur.hop == 4
    with pytest.raises(BenchgenError, match="no 'valid' split"):
        cur.probe()
    off = Curriculum(ccfg(curriculum=False, loops_sampling="fixed"), depth, None, 2)
    assert off.hop == 4 and off.active() is None and not off.due(2)


def test_loop_sampling_tied_to_depth_and_eval_loops():
    cfg = ccfg(loops_extra=3)
    seen = {sample_loops(cfg, 9, s, hop=4)[0] for s in range(200)}
    assert seen == {4, 5, 6, 7}
    assert eval_loops(cfg, 9, 4) == 7 and eval_loops(ccfg(curriculum_loops=5), 9, 4) == 5
    assert eval_loops(ccfg(loops_sampling="fixed"), 9, 4) == 9
    with pytest.raises(ConfigError, match="curriculum"):
        ccfg(curriculum=False).validate()
    with pytest.raises(ConfigError, match="curriculum-threshold"):
        ccfg(curriculum_threshold=1.5).validate()


def test_balanced_rows_uniform_over_active_depths():
    depth = torch.tensor([1] * 5 + [2] * 50 + [3] * 500 + [4] * 5)
    rows = balanced_rows(depth, 3, 3000, step=7, seed=1)
    d = depth[rows].numpy()
    assert d.max() == 3
    share = np.bincount(d, minlength=4)[1:] / len(d)
    assert np.allclose(share, 1 / 3, atol=0.04)  # uniform over depths, not rows
    assert torch.equal(rows, balanced_rows(depth, 3, 3000, step=7, seed=1))


def run_scripted(khop: Path, out: Path, monkeypatch, script: list[float], steps: int, resume: bool = False):
    """Train with accuracy() scripted for curriculum checks; record the deepest row of every batch."""
    calls, deepest = iter(script), []
    real_batch = train_mod.make_batch

    def fake_accuracy(model, data, loops, **kw):
        return next(calls, 0.0)

    def spy_batch(data, idx):
        if len(data) > 100:  # the train split (evaluation subsets are smaller)
            deepest.append(int(data.depth[idx].max()))
        return real_batch(data, idx)

    monkeypatch.setattr(train_mod, "accuracy", fake_accuracy)
    monkeypatch.setattr(train_mod, "make_batch", spy_batch)
    train_mod.train(khop, out, MODEL, ccfg(steps=steps), resume=resume, steps=steps, progress=False)
    return deepest


def test_curriculum_advances_on_scripted_accuracy(khop, tmp_path, monkeypatch):
    # checks at steps 2, 4, 6, 8: 0.5 stays at 2; 0.97 -> 3; 0.2 stays; 0.99 -> 4 (the deepest hop)
    deepest = run_scripted(khop, tmp_path / "run", monkeypatch, [0.5, 0.97, 0.2, 0.99], steps=12)
    assert max(deepest[:4]) == 2 and max(deepest[4:8]) == 3 and max(deepest[8:]) == 4
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    ev = [r for r in rows if r["kind"] == "curriculum"]
    assert [(r["step"], r["hop"], r["advanced"], r["max_hop"]) for r in ev] == [
        (0, None, False, 2), (2, 2, False, 2), (4, 2, True, 3), (6, 3, False, 3), (8, 3, True, 4)]
    assert [r["loops"] for r in ev[1:]] == [4, 4, 5, 5]  # k + loops-extra at the measured hop
    T = [r["loops"] for r in rows if r["kind"] == "train"]
    assert all(2 <= t <= 4 for t in T[:4]) and all(4 <= t <= 6 for t in T[8:])
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["trained_loops"] == 6 and cfg["loop_sampling"] == "sampled"
    assert cfg["curriculum"] == {"max_hop": 4, "deepest_hop": 4}
    assert (tmp_path / "run" / "curves.png").exists()


def test_curriculum_state_survives_resume(khop, tmp_path, monkeypatch):
    run = tmp_path / "run"
    run_scripted(khop, run, monkeypatch, [0.5, 0.97, 0.2], steps=6)
    deepest = run_scripted(khop, run, monkeypatch, [0.99], steps=12, resume=True)
    assert max(deepest[:2]) == 3 and max(deepest[2:]) == 4  # steps 7-8 at hop 3; check at 8 -> 4


def test_depth_presets_resolve():
    for name in ("cpu-depth-looped", "cpu-depth-vanilla", "cpu-depth-isoflop", "ltg-depth"):
        m, t = resolve(name)
        assert t.curriculum, name
    m, t = resolve("cpu-depth-looped")
    mv, _ = resolve("cpu-depth-vanilla")
    assert (m.n_block, mv.n_block, mv.loops, t.loops_sampling) == (1, 1, 1, "depth")


def test_khop_depth_small_preset_and_cap_train(tmp_path):
    from benchgen.dataset import load
    from benchgen.tasks.khop.config import PRESETS

    KhopConfig(**PRESETS["khop-depth-small"].config).validate()
    cfg = KhopConfig(structure="permutation", num_entities=12, num_relations=3, out_degree=3, ood_fraction=0.0,
                     train_hops=(2, 3, 4), test_hops=(5,), train_per_hop=500, cap_train=True, valid_per_hop=8,
                     test_per_hop=8, systematic_per_hop=0, seed=0)
    ds = load(khop_task.generate(cfg, tmp_path / "cap", progress=False))
    depth = np.asarray(ds.table("train", columns=["depth"]).column("depth"))
    # every chain left after valid + test where the graph is small (12*3^k - 16), else train-per-hop
    assert np.bincount(depth).tolist()[1:] == [36, 12 * 9 - 16, 12 * 27 - 16, 500]
    with pytest.raises(ConfigError, match="train-per-hop"):
        khop_task.generate(KhopConfig(**{**cfg.__dict__, "cap_train": False}), tmp_path / "nocap", progress=False)


def test_row_depth_loops_give_each_row_its_own_depth(khop, tmp_path, monkeypatch):
    """loops-sampling=row_depth: every training row runs exactly its own depth d (+ [0, m]) loops, so a block
    that takes one hop per loop stops after its row's hops (p-hop's find applied T times)."""
    from benchgen.reference_models.model import LoopedTransformer

    depths, loops = [], []
    real_batch, real_forward = train_mod.make_batch, LoopedTransformer.forward

    def spy_batch(data, idx):
        if len(data) > 100:  # the train split
            depths.append(data.depth[idx].clone())
        return real_batch(data, idx)

    def spy_forward(self, idx, *a, row_loops=None, **kw):
        if self.training and row_loops is not None:
            loops.append(row_loops.clone())
        return real_forward(self, idx, *a, row_loops=row_loops, **kw)

    monkeypatch.setattr(train_mod, "make_batch", spy_batch)
    monkeypatch.setattr(LoopedTransformer, "forward", spy_forward)
    monkeypatch.setattr(train_mod, "accuracy", lambda *a, **k: 0.0)
    for m in (0, 2):
        depths.clear(), loops.clear()
        cfg = ccfg(loops_sampling="row_depth", loops_extra=m, steps=6, curriculum_start=4)
        train_mod.train(khop, tmp_path / f"run{m}", MODEL, cfg, steps=6, progress=False)
        assert len(loops) == len(depths) == 6
        extra = torch.cat(loops) - torch.cat(depths)
        assert int(extra.min()) == 0 and int(extra.max()) == m, m  # own depth, plus [0, m]
        assert len(set(torch.cat(depths).tolist())) > 1  # mixed depths in one batch, each its own T
    assert eval_loops(ccfg(loops_sampling="row_depth", loops_extra=1), 9, 4) == 5
    assert sample_loops(ccfg(loops_sampling="row_depth", loops_extra=1), 9, 3, hop=4)[0] == 5
