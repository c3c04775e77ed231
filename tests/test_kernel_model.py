"""Whole-model equivalence: a training step through the Triton junction (interpreter on CPU)
equals the same step through the PyTorch reference junction."""

from __future__ import annotations

import dataclasses
import importlib

import pytest
import torch

pytest.importorskip("triton")

from benchgen.reference_models.config import ModelConfig  # noqa: E402
from benchgen.reference_models.model import LoopedTransformer  # noqa: E402


@pytest.mark.parametrize("variant", [
    {"injection": "parcae", "conditioning": "none"},
    {"injection": "add", "conditioning": "loopformer"},
])
def test_training_step_equal_between_kernel_and_reference(variant, monkeypatch):
    kernel_module = importlib.import_module("benchgen.reference_models.kernels.junction")
    calls = []
    apply = kernel_module.JunctionFunction.apply
    monkeypatch.setattr(kernel_module.JunctionFunction, "apply", lambda *a: calls.append(1) or apply(*a))
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=11, max_len=6, d_model=16, n_heads=2, n_block=1, n_prelude=1, loops=2,
                      positions="learned", kernel="torch", **variant)
    ref = LoopedTransformer(cfg)
    tri = LoopedTransformer(dataclasses.replace(cfg, kernel="triton"))
    tri.load_state_dict(ref.state_dict())
    idx = torch.randint(0, 11, (2, 5))
    target = torch.randint(0, 11, (2,))
    results = []
    for model in (ref, tri):
        calls.clear()
        # SGD: the step is lr * grad, so equal gradients must give equal parameters (Adam's first step
        # is lr * sign(grad), which flips on gradients that are zero up to rounding)
        opt = torch.optim.SGD(model.parameters(), lr=1e-1)
        logits = model(idx, at=torch.tensor([4, 4]))
        loss = torch.nn.functional.cross_entropy(logits, target)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        opt.step()
        assert bool(calls) == (model is tri)  # the Triton autograd Function ran only for the kernel model
        results.append((loss.detach(), grads, {n: p.detach().clone() for n, p in model.named_parameters()}))
    (l0, g0, p0), (l1, g1, p1) = results
    torch.testing.assert_close(l1, l0, rtol=1e-5, atol=1e-6)
    assert g0.keys() == g1.keys() and len(g0) > 5
    for n in g0:
        torch.testing.assert_close(g1[n], g0[n], rtol=1e-4, atol=1e-5, msg=n)
    for n in p0:
        torch.testing.assert_close(p1[n], p0[n], rtol=1e-4, atol=1e-5, msg=n)
