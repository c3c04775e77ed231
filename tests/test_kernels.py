"""Fused junction kernel vs the PyTorch reference (Triton runs through TRITON_INTERPRET=1 on CPU).

Covers forward values and every gradient (h, z, a, b, s) for fp32/bf16/fp16 at ragged sizes, absent /
per-channel / per-element coefficients, gradients entering through either output, fp64 gradcheck
through the Triton autograd Function, and the backend dispatch (argument, env var, errors).
"""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from benchgen.reference_models.kernels.junction import (
    JunctionFunction,
    junction,
    junction_reference,
    select_backend,
)

# The package re-exports the function under the same name, so fetch the module itself explicitly.
junction_mod = importlib.import_module("benchgen.reference_models.kernels.junction")

# Tolerances vs the same-dtype reference: both accumulate in fp32, so they differ by about one
# rounding of the output dtype (bf16 ulp ~ 2^-8 relative, fp16 ~ 2^-11).
TOL = {
    torch.float32: dict(rtol=1e-4, atol=1e-5),
    torch.bfloat16: dict(rtol=2e-2, atol=2e-2),
    torch.float16: dict(rtol=4e-3, atol=4e-3),
}
SHAPES = [(1, 8), (7, 40), (33, 130)]


def _needs_triton() -> None:
    pytest.importorskip("triton")


def _make(
    shape: tuple[int, ...], dtype: torch.dtype, a_mode: str, b_mode: str, s_mode: str, seed: int = 0
) -> tuple[torch.Tensor, ...]:
    """Random leaf inputs; ``*_mode`` in {'none', 'channel', 'full'}."""
    gen = torch.Generator().manual_seed(seed)
    hidden = shape[-1]

    def coef(mode: str, scale: float, offset: float) -> torch.Tensor | None:
        if mode == "none":
            return None
        cshape = (hidden,) if mode == "channel" else shape
        t = offset + scale * torch.randn(cshape, generator=gen, dtype=torch.float64)
        return t.to(dtype).requires_grad_()

    h = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype).requires_grad_()
    z = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype).requires_grad_()
    return h, z, coef(a_mode, 0.3, 0.8), coef(b_mode, 1.0, 0.0), coef(s_mode, 0.2, 0.0)


def _run(fn, inputs, grads_out, use=(True, True)):
    """Forward ``fn`` and return outputs + gradients of every present input (upstream ``grads_out``)."""
    h, z, a, b, s = inputs
    outs = fn(h, z, a, b, s)
    leaves = [t for t in inputs if t is not None]
    used = [(o, g) for o, g, u in zip(outs, grads_out, use) if u]
    grads = torch.autograd.grad([o for o, _ in used], leaves, [g for _, g in used], allow_unused=True)
    return outs, grads


def _triton(h, z, a, b, s):
    return junction(h, z, a, b, s, backend="triton")


def _assert_matches(inputs, dtype, use=(True, True), seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    shape = inputs[0].shape
    grads_out = [torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype) for _ in range(2)]
    outs_t, grads_t = _run(_triton, inputs, grads_out, use)
    outs_r, grads_r = _run(junction_reference, inputs, grads_out, use)
    assert outs_t[0].grad_fn is not None and "JunctionFunction" in type(outs_t[0].grad_fn).__name__
    for name, got, ref in zip(("h_new", "y"), outs_t, outs_r):
        assert got.dtype == ref.dtype and got.shape == ref.shape, name
        torch.testing.assert_close(got, ref, **TOL[dtype], msg=lambda m, n=name: f"{n}: {m}")
    names = [n for n, t in zip("hzabs", inputs) if t is not None]
    for name, got, ref, leaf in zip(names, grads_t, grads_r, [t for t in inputs if t is not None]):
        if ref is None:  # reference graph does not reach this leaf (e.g. s when y is unused)
            assert got is None or not got.any(), name
            continue
        assert got is not None, f"missing grad for {name}"
        assert got.dtype == leaf.dtype and got.shape == leaf.shape, name
        torch.testing.assert_close(got, ref, **TOL[dtype], msg=lambda m, n=name: f"d{n}: {m}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("modes", [("channel", "full", "channel"), ("full", "channel", "full")], ids=str)
def test_forward_backward_matches_reference(dtype, shape, modes):
    _needs_triton()
    _assert_matches(_make(shape, dtype, *modes), dtype)


@pytest.mark.parametrize(
    "modes", list(itertools.product(("none", "channel", "full"), repeat=3)), ids=lambda m: "-".join(m)
)
def test_all_coefficient_variants(modes):
    _needs_triton()
    _assert_matches(_make((7, 40), torch.float32, *modes), torch.float32)


@pytest.mark.parametrize("use", [(True, False), (False, True)], ids=["h_new_only", "y_only"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_gradient_through_single_output(use, dtype):
    """dh' sums the residual gradient and the RMSNorm backward; each half alone must be right."""
    _needs_triton()
    _assert_matches(_make((7, 40), dtype, "channel", "channel", "channel"), dtype, use=use)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_backward_programs_loop_over_several_tiles(dtype):
    """161 rows x H=8: 11 row tiles over 4 backward programs (3 tiles each, last one ragged), so the
    per-program loop and the cross-program partial-sum reduction are both exercised."""
    _needs_triton()
    block_m, _, _ = junction_mod._launch_settings(161, 8)
    n_tiles = -(-161 // block_m)
    assert n_tiles > junction_mod._num_bwd_programs(n_tiles, torch.device("cpu")) > 1
    _assert_matches(_make((161, 8), dtype, "channel", "channel", "channel"), dtype)
    _assert_matches(_make((161, 8), dtype, "full", "none", "full"), dtype)


def test_leading_dims_noncontiguous_and_broadcast_coefs():
    """(B, T, H) inputs, a transposed (non-contiguous) h, an (1, 1, H) a and a (B, 1, H) s."""
    _needs_triton()
    gen = torch.Generator().manual_seed(3)
    h = torch.randn(5, 2, 24, generator=gen).transpose(0, 1).requires_grad_()
    z = torch.randn(2, 5, 24, generator=gen, requires_grad=True)
    a = torch.rand(1, 1, 24, generator=gen, requires_grad=True)
    s = (0.1 * torch.randn(2, 1, 24, generator=gen)).requires_grad_()
    _assert_matches((h, z, a, None, s), torch.float32)


def test_mixed_dtype_fp32_coefficients_bf16_activations():
    """fp32 parameters with bf16 activations: outputs in bf16, each gradient in its leaf's dtype."""
    _needs_triton()
    h, z, _, _, _ = _make((7, 40), torch.bfloat16, "none", "none", "none")
    _, _, a, b, s = _make((7, 40), torch.float32, "channel", "full", "channel", seed=5)
    _assert_matches((h, z, a, b, s), torch.bfloat16)


def test_bf16_backward_recomputes_h_new_in_fp32():
    """With bf16 activations and fp32 coefficients, da/db/ds come back in fp32 and must agree with the
    reference to fp32 accuracy. A backward that re-read the bf16-rounded h' (instead of recomputing it
    from h, z, a, b) would be off by ~2^-9 relative (about 6e-3 here), far outside this tolerance."""
    _needs_triton()
    h, z, _, _, _ = _make((33, 130), torch.bfloat16, "none", "none", "none")
    _, _, a, b, s = _make((33, 130), torch.float32, "channel", "channel", "channel", seed=5)
    gen = torch.Generator().manual_seed(9)
    grads_out = [torch.randn(33, 130, generator=gen).to(torch.bfloat16) for _ in range(2)]
    _, g_t = _run(_triton, (h, z, a, b, s), grads_out)
    _, g_r = _run(junction_reference, (h, z, a, b, s), grads_out)
    for name, got, ref in zip("abs", g_t[2:], g_r[2:]):
        assert got.dtype == torch.float32, name
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-4, msg=lambda m, n=name: f"d{n}: {m}")


@pytest.mark.parametrize(
    "modes",
    [("channel", "full", "channel"), ("full", "channel", "full"), ("none", "none", "none")],
    ids=lambda m: "-".join(m),
)
def test_gradcheck_fp64_through_triton_function(modes):
    _needs_triton()
    h, z, a, b, s = _make((3, 5), torch.float64, *modes)

    def fn(h, z, a, b, s):
        return JunctionFunction.apply(h, z, a, b, s, 1e-6)

    inputs = (h, z, a, b, s)
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-8, rtol=1e-6)


def test_fp64_forward_matches_reference_closely():
    _needs_triton()
    inputs = _make((7, 40), torch.float64, "channel", "full", "channel")
    for got, ref in zip(_triton(*inputs), junction_reference(*inputs)):
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def test_eps_is_honoured():
    """A zero row normalises to zero; a tiny row is damped by eps exactly like the reference."""
    _needs_triton()
    h = torch.zeros(3, 16)
    h[1] = 1e-4
    z = torch.zeros(3, 16)
    for eps in (1e-6, 1e-2):
        got = junction(h, z, eps=eps, backend="triton")
        ref = junction_reference(h, z, eps=eps)
        torch.testing.assert_close(got[1], ref[1], rtol=1e-5, atol=1e-7)
    assert not got[1][0].any()


# -- dispatch -----------------------------------------------------------------------------------------


def _is_fused(out: tuple[torch.Tensor, torch.Tensor]) -> bool:
    return "JunctionFunction" in type(out[0].grad_fn).__name__


def test_dispatch_explicit_backend_and_env(monkeypatch):
    _needs_triton()
    h, z, a, b, s = _make((2, 8), torch.float32, "channel", "none", "channel")
    monkeypatch.delenv("BENCHGEN_KERNEL", raising=False)
    assert not _is_fused(junction(h, z, a, b, s))  # auto on CPU -> reference
    assert select_backend(h) == "torch"
    assert _is_fused(junction(h, z, a, b, s, backend="triton"))
    monkeypatch.setenv("BENCHGEN_KERNEL", "triton")
    assert select_backend(h) == "triton"
    assert _is_fused(junction(h, z, a, b, s))
    assert not _is_fused(junction(h, z, a, b, s, backend="torch"))  # argument beats env var
    monkeypatch.setenv("BENCHGEN_KERNEL", "torch")
    assert not _is_fused(junction(h, z, a, b, s))
    assert _is_fused(junction(h, z, a, b, s, backend="triton"))
    monkeypatch.setenv("BENCHGEN_KERNEL", "auto")
    assert select_backend(h) == "torch"


def test_dispatch_rejects_unknown_backend(monkeypatch):
    h = torch.randn(2, 8)
    with pytest.raises(ValueError, match="unknown junction backend"):
        junction(h, h, backend="cuda")
    monkeypatch.setenv("BENCHGEN_KERNEL", "fast")
    with pytest.raises(ValueError, match="unknown junction backend"):
        junction(h, h)


def test_forced_triton_without_triton_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(junction_mod, "HAS_TRITON", False)
    h = torch.randn(2, 8)
    with pytest.raises(RuntimeError, match="triton is not importable"):
        junction(h, h, backend="triton")
    monkeypatch.delenv("BENCHGEN_KERNEL", raising=False)
    out = junction(h, h, backend="auto")  # auto silently uses the reference
    torch.testing.assert_close(out[0], 2 * h)


def test_imports_without_triton_and_needs_interpreter_on_cpu():
    """Fresh interpreters: with triton blocked the module imports and falls back to the reference;
    with triton but no TRITON_INTERPRET, forcing Triton on CPU tensors is a clear error."""
    code = textwrap.dedent(
        """
        import sys
        if sys.argv[1] == "block":
            sys.modules["triton"] = None  # makes `import triton` raise ImportError
        import torch
        from benchgen.reference_models.kernels import junction as jn
        import importlib
        mod = importlib.import_module("benchgen.reference_models.kernels.junction")
        h = torch.randn(3, 8)
        assert mod.HAS_TRITON == (sys.argv[1] != "block")
        torch.testing.assert_close(jn(h, h)[0], 2 * h)
        try:
            jn(h, h, backend="triton")
        except RuntimeError as err:
            print("ERR", err)
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "BENCHGEN_KERNEL")}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    modes = ["block"] + (["plain"] if importlib.util.find_spec("triton") else [])
    for mode in modes:
        res = subprocess.run(
            [sys.executable, "-c", code, mode], env=env, capture_output=True, text=True, timeout=120
        )
        assert res.returncode == 0, res.stderr
        expected = "triton is not importable" if mode == "block" else "needs the interpreter"
        assert "ERR" in res.stdout and expected in res.stdout, res.stdout


def test_bad_shapes_raise():
    _needs_triton()
    h = torch.randn(4, 8)
    with pytest.raises(ValueError, match="same shape"):
        junction(h, torch.randn(4, 9), backend="triton")
    with pytest.raises(ValueError, match="does not broadcast"):
        junction(h, h, a=torch.randn(3), backend="triton")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_auto_uses_triton_on_cuda(monkeypatch):
    _needs_triton()
    monkeypatch.delenv("BENCHGEN_KERNEL", raising=False)
    h = torch.randn(64, 256, device="cuda", dtype=torch.bfloat16)
    assert select_backend(h) == "triton"
    assert select_backend(h.cpu()) == "torch"
