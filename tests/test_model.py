"""LoopedTransformer: shapes, masking, T=1 == vanilla, per-iteration readout, truncated backprop."""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pytest
import torch

from benchgen.reference_models import model as model_mod
from benchgen.reference_models.config import PRESETS, ModelConfig, resolve
from benchgen.reference_models.data import AnswerFormat, encode, make_batch
from benchgen.reference_models.model import LoopedTransformer

V = 23


def build(seed: int = 0, **kw) -> LoopedTransformer:
    base = dict(vocab_size=V, max_len=12, d_model=32, n_heads=4, n_block=2, loops=3, positions="learned", kernel="torch")
    base.update(kw)
    torch.manual_seed(seed)
    m = LoopedTransformer(ModelConfig(**base)).double()
    with torch.no_grad():  # non-trivial norm scales / zero-init parts so equalities are not vacuous
        for name, p in m.named_parameters():
            if name.endswith(("s_attn", "s_mlp", "s_final")):
                p.normal_(0, 0.3)
            if name.startswith("mod."):
                p.normal_(0, 0.05)
    return m.eval()


def tokens(b: int = 3, n: int = 9, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, V, (b, n), generator=torch.Generator().manual_seed(seed))


VARIANTS = [
    dict(injection="none"), dict(injection="add"), dict(injection="concat"),
    dict(injection="parcae", n_prelude=1, n_coda=1), dict(injection="none", positions="rotary", n_coda=1),
    dict(injection="add", positions="none", zero_init_out=False),
]


def test_shapes_and_at_readout():
    m = build()
    x = tokens()
    assert m(x).shape == (3, 9, V)
    assert m(x, loops=5, readout="all").shape == (5, 3, 9, V)
    at = torch.tensor([0, 4, 8])
    full = m(x, loops=2)
    picked = m(x, loops=2, at=at)
    assert picked.shape == (3, V)
    assert torch.allclose(picked, full[torch.arange(3), at])
    with pytest.raises(ValueError, match="max_len"):
        m(tokens(n=13))
    with pytest.raises(ValueError, match="loops"):
        m(x, loops=0)


def test_answer_mask_and_padding():
    fmt = AnswerFormat(None, 2, 3)
    t = pa.table({"input_ids": pa.array([[5, 6, 7], [8]], pa.list_(pa.int32())),
                  "target_ids": pa.array([[9], [10, 11]], pa.list_(pa.int32())),
                  "depth": pa.array([1, 2], pa.int32())})
    enc = encode(t, fmt, pad_id=0)
    assert enc.tokens.tolist() == [[5, 6, 7, 9, 2], [8, 10, 11, 2, 0]]
    x, y, mask = make_batch(enc, torch.tensor([0, 1]))
    assert x.tolist() == [[5, 6, 7, 9], [8, 10, 11, 2]]
    # row 0 predicts 9 (from pos 2) and eos (pos 3); row 1 predicts 10, 11, eos from pos 0..2
    assert mask.tolist() == [[False, False, True, True], [True, True, True, False]]
    assert y[mask].tolist() == [9, 2, 10, 11, 2]


@pytest.mark.parametrize("kw", VARIANTS[:3])
def test_right_padding_never_changes_real_positions(kw):
    m = build(**kw)
    x = tokens(n=6)
    padded = torch.cat([x, torch.zeros(3, 4, dtype=torch.long)], 1)
    assert torch.allclose(m(x, loops=3), m(padded, loops=3)[:, :6], atol=1e-10)


def test_t1_looped_equals_vanilla_and_unrolled():
    looped = build(loops=4)
    vanilla = build(seed=7, loops=1)
    vanilla.load_state_dict(looped.state_dict())
    x = tokens()
    assert torch.allclose(looped(x, loops=1), vanilla(x), atol=1e-12)
    # k layers looped T times == a vanilla stack of k*T layers holding copies of the block
    unrolled = build(seed=8, n_block=2 * 3, loops=1)
    state = {k: v for k, v in looped.state_dict().items() if not k.startswith("block.")}
    for k, v in looped.state_dict().items():
        if k.startswith("block."):
            _, i, rest = k.split(".", 2)
            for t in range(3):
                state[f"block.{t * 2 + int(i)}.{rest}"] = v
    unrolled.load_state_dict(state)
    assert torch.allclose(looped(x, loops=3), unrolled(x), atol=1e-10)
    assert not torch.allclose(looped(x, loops=3), looped(x, loops=2), atol=1e-4)


@pytest.mark.parametrize("kw", VARIANTS)
def test_per_iteration_readout_equals_separate_runs(kw):
    m = build(**kw)
    x = tokens()
    every = m(x, loops=5, readout="all")
    for t in range(1, 6):
        assert torch.allclose(every[t - 1], m(x, loops=t), atol=1e-10), t


def test_loopformer_routes_depend_on_step_size():
    m = build(conditioning="loopformer")
    x = tokens()
    # with non-zero modulation, the 2-step route (dt=1/2) differs from the first 2 steps of a 4-step route
    assert not torch.allclose(m(x, loops=4, readout="all")[1], m(x, loops=2), atol=1e-6)
    fresh = LoopedTransformer(dataclasses.replace(m.cfg)).double()
    assert all(float(p.detach().abs().max()) == 0 for n, p in fresh.named_parameters() if n.startswith("mod."))


@pytest.mark.parametrize("kw", [dict(injection="add"), dict(injection="parcae", n_prelude=1)])
def test_truncated_backprop_matches_manual_truncation(kw):
    m = build(**kw).train()
    x = tokens()
    T, keep = 5, 2

    def grads(loss):
        m.zero_grad()
        loss.backward()
        return {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in m.named_parameters()}

    g_trunc = grads(m(x, loops=T, backprop_last=keep).pow(2).mean())
    g_full = grads(m(x, loops=T).pow(2).mean())
    # manual: run T-keep iterations without a graph, then keep iterations with one
    e = m.embed(x)
    if len(m.prelude):
        e, _ = m.run(m.prelude, e, model_mod.rmsnorm(e, m.prelude[0].s_attn, m.cfg.eps), m.s_final, None)
    h = torch.zeros_like(e)
    with torch.no_grad():
        for t in range(T - keep):
            h, _, _ = m.iterate(h, e, None, t, T, None, False)
    for t in range(T - keep, T):
        h, y, _ = m.iterate(h, e, None, t, T, None, False)
    g_manual = grads(m.readout(h, y).pow(2).mean())
    block = [n for n in g_trunc if n.startswith("block.")]
    for n in g_trunc:
        assert torch.allclose(g_trunc[n], g_manual[n], atol=1e-10), n
    assert any(not torch.allclose(g_trunc[n], g_full[n], atol=1e-8) for n in block)
    assert all(float(g_trunc[n].abs().max()) > 0 for n in block if "proj" in n)


def test_truncation_builds_no_graph_for_early_iterations():
    m = build(injection="add").train()
    seen = []
    orig = m.iterate

    def spy(h, *a, **k):
        out = orig(h, *a, **k)
        seen.append(out[0].requires_grad)
        return out

    m.iterate = spy
    m(tokens(), loops=6, backprop_last=2)
    assert seen == [False, False, False, False, True, True]


def test_every_residual_goes_through_junction(monkeypatch):
    calls = []
    real = model_mod._junction

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(model_mod, "_junction", counting)
    m = build(injection="add", n_prelude=1, n_coda=1, n_block=2)
    m(tokens(), loops=3)
    # 2 junctions per layer application: prelude 1 + block 2*3 + coda 1 = 8 layers; + 3 injections
    assert len(calls) == 2 * 8 + 3


def test_parcae_injection_is_contractive():
    m = build(injection="parcae")
    a = torch.exp(-torch.nn.functional.softplus(m.dt_bias) * m.A_log.exp()).detach()
    assert float(a.max()) < 1.0 and float(a.min()) > 0.0


def test_presets_resolve_and_overrides():
    for name in PRESETS:
        mc, tc = resolve(name)
        mc.validate()
        tc.validate()
    mc, tc = resolve("cpu-khop-looped", overrides=["model.loops=7", "train.lr=0.5", "model.positions=none"])
    assert (mc.loops, tc.lr, mc.positions) == (7, 0.5, "none")
    from benchgen.errors import ConfigError

    with pytest.raises(ConfigError, match="model.bogus"):
        resolve("cpu-khop-looped", overrides=["model.bogus=1"])
    with pytest.raises(ConfigError, match="loops"):
        resolve(None, overrides=["model.loops=0"])
    with pytest.raises(ConfigError, match="preset"):
        resolve("nope")


@pytest.mark.parametrize("kw", [dict(injection="add"), dict(injection="none", positions="rotary"),
                                dict(injection="parcae", n_prelude=1, n_coda=1, exit_proj=True)])
def test_per_row_loops_equal_separate_runs(kw):
    m = build(**kw)
    x = tokens(b=4)
    rows = torch.tensor([1, 3, 2, 4])
    got = m(x, row_loops=rows)
    for i, T in enumerate(rows.tolist()):
        assert torch.allclose(got[i], m(x[i:i + 1], loops=T)[0], atol=1e-10), (i, T)


def test_per_row_truncated_backprop_gives_each_row_its_last_m():
    m = build(injection="add").train()
    x = tokens(b=2)
    rows = torch.tensor([4, 2])
    e = m.embed(x).detach().requires_grad_(True)
    m.embed = lambda idx: e  # gradient with respect to the (injected) embeddings
    m(x, row_loops=rows, backprop_last=1).sum().backward()
    g_trunc = e.grad.clone()
    e.grad = None
    m(x, row_loops=rows).sum().backward()
    # truncation removes gradient paths, so the gradients differ, but only through the early iterations
    assert not torch.allclose(g_trunc, e.grad)
    assert float(g_trunc.abs().sum()) > 0


def test_loopformer_route_uniform_equals_loops_and_nonuniform_differs():
    m = build(conditioning="loopformer")
    x = tokens()
    assert torch.allclose(m(x, route=[0.25] * 4), m(x, loops=4), atol=1e-10)
    assert not torch.allclose(m(x, route=[0.5, 0.25, 0.25]), m(x, loops=3), atol=1e-6)


def test_parcae_details_initialise_as_in_the_paper():
    m = build(injection="parcae", state_init="noise", exit_proj=True)
    a = torch.exp(-torch.nn.functional.softplus(m.dt_bias) * m.A_log.exp()).detach()
    assert torch.allclose(a, torch.full_like(a, 0.2 ** 0.5))
    fresh = LoopedTransformer(dataclasses.replace(m.cfg))
    assert torch.equal(fresh.C.weight, torch.eye(32)) and torch.equal(fresh.B.weight, torch.eye(32))
    x = tokens()
    torch.manual_seed(0)
    a1 = m(x)
    torch.manual_seed(1)
    assert not torch.allclose(a1, m(x))  # the state starts as noise, not as zeros


SCORED_VARIANTS = [*VARIANTS, dict(injection="none", positions="rotary", n_block=1),
                   dict(injection="parcae", positions="rotary", state_init="noise", exit_proj=True),
                   dict(injection="add", positions="rotary", conditioning="loopformer", n_prelude=1, n_coda=2)]


@pytest.mark.parametrize("kw", SCORED_VARIANTS, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_scored_positions_give_the_padded_grids_values_and_gradients(kw):
    """``scored`` (rows packed to their real tokens, the last layer only at scored positions) gives the
    padded grid's logits and state at every scored position, zeros elsewhere, and the same gradients."""
    m = build(**kw).train()
    B, L = 7, 12
    x = tokens(B, L)
    ends = torch.tensor([1, 12, 5, 5, 9, 2, 12])
    scored = torch.zeros(B, L, dtype=torch.bool)
    scored[torch.arange(B), ends - 1] = True
    scored[2, 1:5] = True  # several scored positions in one row (eos-terminated answers)
    for readout in ("last", "all"):
        torch.manual_seed(3)
        full, h_full = m(x, loops=3, readout=readout, return_state=True)
        torch.manual_seed(3)
        got, h_got = m(x, loops=3, readout=readout, return_state=True, scored=scored)
        assert torch.allclose(got[..., scored, :], full[..., scored, :], atol=1e-12)
        if readout == "last":
            assert torch.equal(got[~scored], torch.zeros_like(got[~scored]))
            assert torch.allclose(h_got[scored], h_full[scored], atol=1e-12)
    grads = []
    for s in (None, scored):
        m.zero_grad()
        torch.manual_seed(3)
        out = m(x, loops=3, scored=s)
        (out[scored] ** 2).sum().backward()
        grads.append([p.grad.clone() for p in m.parameters() if p.grad is not None])
    assert len(grads[0]) == len(grads[1]) and all(torch.allclose(a, b, atol=1e-10) for a, b in zip(*grads))


def test_randomised_rotary_positions_are_relative_and_off_at_evaluation(monkeypatch):
    """rope_random_max: training rows get sorted random positions; shifting every position of a row by a
    constant changes nothing (rotary is relative), uneven spacing does; evaluation uses 0..L-1."""
    from benchgen.reference_models import model as model_mod

    torch.manual_seed(0)
    cfg = ModelConfig(d_model=32, n_heads=4, n_block=1, loops=2, positions="rotary", rope_random_max=16,
                      vocab_size=20, max_len=16)
    m = LoopedTransformer(cfg).double()
    idx = torch.randint(4, 20, (3, 7))
    m.eval()
    plain = m(idx)
    off = LoopedTransformer(ModelConfig(**{**cfg.__dict__, "rope_random_max": 0})).double()
    off.load_state_dict(m.state_dict())
    off.eval()
    assert torch.equal(plain, off(idx))  # evaluation: positions 0..L-1 whatever the span
    m.train()
    monkeypatch.setattr(model_mod, "random_positions", lambda B, L, span, dev: torch.arange(L)[None].repeat(B, 1) + 5)
    assert torch.allclose(m(idx), plain, atol=1e-10)  # a constant shift: the same function
    monkeypatch.setattr(model_mod, "random_positions", lambda B, L, span, dev: (torch.arange(L) * 2)[None].repeat(B, 1))
    assert not torch.allclose(m(idx), plain, atol=1e-6)  # other spacing: other relative offsets
    monkeypatch.undo()
    pos = model_mod.random_positions(500, 7, 16, torch.device("cpu"))
    assert (pos.diff(dim=1) > 0).all() and pos.min() >= 0 and pos.max() <= 15
    assert pos[:, 0].max() <= 9 and len(set(pos[:, 0].tolist())) >= 5  # starts vary; 7 sorted positions fit in 16


def test_per_row_rotary_tables_match_in_both_rotation_paths():
    """Per-row (B, L, dim/2) tables rotate the same in the complex (fp32/64) and strided (other dtypes) paths."""
    from benchgen.reference_models.model import random_positions, rotary, rotary_qk

    torch.manual_seed(1)
    qkv = torch.randn(2, 5, 3, 2, 8, dtype=torch.float64)
    rope = rotary(5, 8, torch.device("cpu"), positions=random_positions(2, 5, 12, torch.device("cpu")))
    fast = rotary_qk(qkv, rope)
    slow = rotary_qk(qkv.to(torch.bfloat16), rope)
    for a, b in zip(fast, slow):
        assert torch.allclose(a, b.double(), atol=0.05, rtol=0.05)
    row0 = rotary_qk(qkv[:1], tuple(t[0] for t in rope))  # one row's table as an (L, dim/2) table
    assert all(torch.allclose(a[:1], b) for a, b in zip(fast, row0))
