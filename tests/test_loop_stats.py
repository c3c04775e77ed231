"""Per-loop statistics over the whole answer (#20): hand-computed cases, and each adapter's teacher
forcing checked against a direct computation (torchscript: a bigram table; reference: its own
forward pass per T)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from fixtures.toy import toy_dataset

from benchgen.dataset import load
from benchgen.evaluators.models.loop_stats import LoopStats
from benchgen.evaluators.models.run import build_adapter, run_model


def _log_softmax(row: list[float]) -> list[float]:
    m = max(row)
    z = math.log(sum(math.exp(x - m) for x in row)) + m
    return [x - z for x in row]


def _kl(lp: list[float], lq: list[float]) -> float:
    return sum(math.exp(a) * (a - b) for a, b in zip(lp, lq))


def _minp(lp: list[float]) -> list[float]:
    p = [math.exp(x) for x in lp]
    q = [1 / len(p) if x < 0.1 * max(p) else x for x in p]
    return [math.log(x / sum(q)) for x in q]


def test_hand_computed_two_token_answer_at_two_loop_counts():
    # one example, answer = tokens (2, 0); V = 3; logits at T=1 and T=3 for both answer positions
    logits = {1: [[1.0, 0.5, 3.0], [0.2, 2.0, -1.0]], 3: [[0.0, 0.1, 4.0], [3.0, 1.0, 0.5]]}
    states = {1: [[1.0, 0.0], [0.0, 2.0]], 3: [[1.0, 1.0], [0.0, 1.0]]}
    target = [2, 0]
    stats = LoopStats(np.array([target, [1, -1]]))  # second row: a one-token answer (1)
    for T in (1, 3):
        lp = np.array([[_log_softmax(r) for r in logits[T]]] * 2)
        stats.add(lp, np.array([states[T]] * 2))
    out = stats.result()
    lp = {T: [_log_softmax(r) for r in logits[T]] for T in (1, 3)}
    # margin: min over tokens of target logit - best other (hand: T=1 -> min(3-1, 0.2-2) = -1.8)
    assert out["margin"][0, 0] == pytest.approx(-1.8)
    assert out["margin"][1, 0] == pytest.approx(min(4.0 - 0.1, 3.0 - 1.0))
    assert out["margin"][0, 1] == pytest.approx(0.5 - 3.0)  # row 2 scores its one token only
    ent = {T: [-sum(math.exp(x) * x for x in r) for r in lp[T]] for T in (1, 3)}
    assert out["entropy"][:, 0] == pytest.approx([np.mean(ent[1]), np.mean(ent[3])])
    assert out["entropy"][0, 1] == pytest.approx(ent[1][0])
    assert np.isnan(out["kl_prev"][0, 0]) and np.isnan(out["latent_diff"][0, 0])
    assert out["kl_prev"][1, 0] == pytest.approx(np.mean([_kl(lp[3][a], lp[1][a]) for a in range(2)]))
    uniform = [math.log(1 / 3)] * 3
    assert out["kl_from_prev"][0, 0] == pytest.approx(np.mean([_kl(uniform, lp[1][a]) for a in range(2)]))
    assert out["kl_from_prev"][1, 0] == pytest.approx(np.mean([_kl(lp[1][a], lp[3][a]) for a in range(2)]))
    assert out["minp_kl"][1, 0] == pytest.approx(np.mean([_kl(_minp(lp[1][a]), _minp(lp[3][a])) for a in range(2)]))
    assert out["confidence"][0, 0] == pytest.approx(min(max(math.exp(x) for x in r) for r in lp[1]))
    rel = [math.dist(states[1][a], states[3][a]) / math.hypot(*states[3][a]) for a in range(2)]
    assert out["latent_diff"][1, 0] == pytest.approx(np.mean(rel))


class Bigram(torch.nn.Module):
    """logits[b, i] = W[x[b, i]]: the next-token distribution depends only on the current token."""

    def __init__(self, W: torch.Tensor):
        super().__init__()
        self.register_buffer("W", W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.W[x]


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    answers = [[1, 2], [3, 4, 5], [6], [2, 2, 7]]  # multi-token answers (a tiny reference run trains on train)
    depths = [len(a) for a in answers]
    return toy_dataset(tmp_path_factory.mktemp("m") / "toy", {"train": depths, "test_id": depths},
                       {"train": answers, "test_id": answers})


def test_torchscript_margins_are_teacher_forced_over_the_whole_answer(multi, tmp_path):
    ds = load(multi)
    V = len(ds.vocab)
    W = torch.randn(V, V, generator=torch.Generator().manual_seed(0))
    path = tmp_path / "bigram.pt"
    torch.jit.script(Bigram(W)).save(str(path))
    preds = run_model(ds, build_adapter(f"torchscript:{path}", ds), splits=["test_id"], progress=False)
    rows = ds.table("test_id").to_pylist()
    for row, margin, entropy in zip(rows, preds["margin"].to_pylist(), preds["entropy"].to_pylist()):
        prev = [row["input_ids"][-1]] + row["target_ids"][:-1]   # teacher forcing: the reference prefix
        margins = [float(W[p, t] - max(W[p, v] for v in range(V) if v != t)) for p, t in zip(prev, row["target_ids"])]
        ents = [-sum(math.exp(x) * x for x in _log_softmax(W[p].tolist())) for p in prev]
        assert margin == pytest.approx(min(margins), abs=1e-5)
        assert entropy == pytest.approx(np.mean(ents), abs=1e-5)


def test_reference_statistics_equal_a_direct_forward_per_loop_count(multi, tmp_path):
    from benchgen.reference_models import checkpoint as ckpt
    from benchgen.reference_models.config import ModelConfig, TrainConfig
    from benchgen.reference_models.train import train

    mc = ModelConfig(d_model=16, n_heads=2, n_block=1, loops=2, positions="learned", kernel="torch")
    tc = TrainConfig(steps=2, batch_size=4, lr=3e-3, warmup_steps=1, eval_every=2, log_every=1, eval_examples=0,
                     threads=1, seed=0)
    ds = load(multi)
    run = train(multi, tmp_path / "run", mc, tc, progress=False)
    preds = run_model(ds, build_adapter(f"reference:{run}", ds), splits=["test_id"], loops=[1, 2, 4], progress=False)
    model, _ = ckpt.load_model(run)
    rows = ds.table("test_id").to_pylist()
    got = {(p["id"], p["loops"]): p for p in preds.to_pylist()}
    for row in rows:
        seq = torch.tensor([row["input_ids"] + row["target_ids"][:-1]])
        n_in, prev_lp = len(row["input_ids"]), None
        for T in (1, 2, 4):
            with torch.no_grad():
                lp = torch.log_softmax(model(seq, loops=T)[0].double(), -1)[n_in - 1:]
            margins = [float(lp[a, t] - torch.cat([lp[a, :t], lp[a, t + 1:]]).max())
                      for a, t in enumerate(row["target_ids"])]
            p = got[(row["id"], T)]
            assert p["margin"] == pytest.approx(min(margins), abs=1e-6)
            if prev_lp is not None:
                kl = [float((lp[a].exp() * (lp[a] - prev_lp[a])).sum()) for a in range(len(row["target_ids"]))]
                assert p["kl_prev"] == pytest.approx(np.mean(kl), abs=1e-6)
            prev_lp = lp
    assert preds["latent_diff"].null_count == len(rows)  # only the first swept T has no previous state


def test_hf_margins_are_teacher_forced_over_the_whole_answer(multi, tmp_path):
    pytest.importorskip("transformers")
    from fixtures.toy import tiny_gpt2
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ds = load(multi)
    ckpt = tiny_gpt2(ds, tmp_path / "gpt2", n_positions=16, steps=0)
    preds = run_model(ds, build_adapter(f"hf:{ckpt}", ds), splits=["test_id"], batch_size=3, progress=False)
    model = AutoModelForCausalLM.from_pretrained(ckpt, local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(ckpt, local_files_only=True)
    for row, margin in zip(ds.table("test_id").to_pylist(), preds["margin"].to_pylist()):
        prompt, answer = tok(row["prompt"])["input_ids"], tok(row["answer"], add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([prompt + answer])).logits[0].double()
        at = range(len(prompt) - 1, len(prompt) - 1 + len(answer))
        margins = [float(logits[i, t] - torch.cat([logits[i, :t], logits[i, t + 1:]]).max()) for i, t in zip(at, answer)]
        assert len(answer) == len(row["target_ids"]) and margin == pytest.approx(min(margins), abs=1e-4)
