"""Residual junction of every loop iteration: ``h' = a*h + b*z ; y = RMSNorm(h') * (1 + s)``.

Covers Parcae injection (a=exp(-dA), b=d, z=Be), gated residuals (a=1, b=g) and LoopFormer
modulation (s from the time/step embedding). ``a``, ``b``, ``s`` are optional (None means 1, 1, 0).
"""

from __future__ import annotations

import torch


def junction_reference(
    h: torch.Tensor,
    z: torch.Tensor,
    a: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    s: torch.Tensor | None = None,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain PyTorch junction; returns ``(h_new, y)``. Accumulates in fp32 (fp64 for fp64 inputs)."""
    acc = torch.float64 if h.dtype == torch.float64 else torch.float32
    hf, zf = h.to(acc), z.to(acc)
    hn = (hf if a is None else a.to(acc) * hf) + (zf if b is None else b.to(acc) * zf)
    y = hn * torch.rsqrt(hn.pow(2).mean(-1, keepdim=True) + eps)
    if s is not None:
        y = y * (1 + s.to(acc))
    return hn.to(h.dtype), y.to(h.dtype)


def junction(h, z, a=None, b=None, s=None, eps: float = 1e-6):
    """Dispatching junction used by the model (the fused-kernel issue swaps in Triton on CUDA)."""
    return junction_reference(h, z, a, b, s, eps)
