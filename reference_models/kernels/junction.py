"""Residual junction of every loop iteration: ``h' = a*h + b*z ; y = RMSNorm(h') * (1 + s)``.

Covers Parcae injection (a=exp(-dA), b=d, z=Be), gated residuals (a=1, b=g) and LoopFormer
modulation (s from the time/step embedding). ``a``, ``b``, ``s`` are optional (None means 1, 1, 0)
and each is either per-channel (``H`` elements, broadcast over rows) or per-element (shape of ``h``).

Liger-Kernel layout: this one file holds the fused Triton kernels, the ``torch.autograd.Function``
wrapping them and the plain PyTorch reference. The fused op reads ``h, z, a, b, s`` once and writes
``h'`` and ``y`` once (forward), and reads them plus both upstream gradients once in the backward,
instead of the ~10 separate elementwise/reduction passes eager PyTorch makes.

Numerics: everything accumulates in fp32 (fp64 for fp64 inputs, so ``gradcheck`` can run through the
Triton path in the interpreter). The forward saves only the per-row ``rstd`` (fp32); the backward
recomputes ``h'`` from the inputs instead of re-reading the rounded bf16/fp16 ``h'``. Per-channel
gradients of ``a``/``b``/``s`` are reduced without atomics: each backward program accumulates its rows
into one fp32 partial-sum row of a ``(num_programs, H)`` buffer, summed in torch afterwards.

Triton is optional: without it only :func:`junction_reference` works (``junction`` falls back to it).
Backend choice (:func:`junction`): the ``backend`` argument, else ``$BENCHGEN_KERNEL``
(``triton``/``torch``/``auto``), else auto = Triton when the tensors are on CUDA and Triton imports.
Forcing Triton on CPU tensors runs the kernels through ``TRITON_INTERPRET=1`` (set before import).
"""

from __future__ import annotations

import os

import torch

try:  # optional dependency: the kernels extra (benchgen.install.install_hint)
    import triton
    import triton.language as tl

    HAS_TRITON = True
except Exception:  # noqa: BLE001 - any import failure (missing, broken install) means "no Triton"
    triton = None
    tl = None
    HAS_TRITON = False

__all__ = [
    "HAS_TRITON",
    "MAX_FUSED_HIDDEN",
    "JunctionFunction",
    "junction",
    "junction_reference",
    "junction_triton",
    "select_backend",
]

#: Largest hidden size the single-pass kernels handle (one row must fit one block); larger H falls
#: back to the reference under ``auto`` and raises when Triton is forced.
MAX_FUSED_HIDDEN = 65536

_BACKENDS = ("auto", "triton", "torch")
_NONE, _CHANNEL, _FULL = 0, 1, 2


# ----------------------------------------------------------------------------------------------------
# PyTorch reference
# ----------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------
# Triton kernels (pointer arithmetic + masks; no block pointers, no autotune)
# ----------------------------------------------------------------------------------------------------

if HAS_TRITON:

    @triton.jit
    def _acc(x, IS_FP64: tl.constexpr):
        """Cast to the accumulation dtype (fp64 for fp64 inputs, else fp32)."""
        if IS_FP64:
            return x.to(tl.float64)
        else:
            return x.to(tl.float32)

    @triton.jit
    def _rsqrt(x, IS_FP64: tl.constexpr):
        """``1/sqrt(x)``; exact division in fp64 (gradcheck), fast rsqrt in fp32."""
        if IS_FP64:
            return 1.0 / tl.sqrt(x)
        else:
            return tl.rsqrt(x)

    @triton.jit
    def _load_coef(ptr, offs, cols, mask, cmask, MODE: tl.constexpr, IS_FP64: tl.constexpr):
        """Load ``a``/``b``/``s``: per-channel (1, BLOCK_N) row or per-element (BLOCK_M, BLOCK_N) tile."""
        if MODE == 1:
            v = tl.load(ptr + cols, mask=cmask, other=0.0)[None, :]
        else:
            v = tl.load(ptr + offs, mask=mask, other=0.0)
        return _acc(v, IS_FP64)

    @triton.jit
    def _junction_fwd_kernel(
        h_ptr, z_ptr, a_ptr, b_ptr, s_ptr,
        hn_ptr, y_ptr, rstd_ptr,
        n_rows, H, eps,
        A_MODE: tl.constexpr, B_MODE: tl.constexpr, S_MODE: tl.constexpr,
        IS_FP64: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    ):  # fmt: skip
        """One program = BLOCK_M full rows: h' = a*h + b*z, rstd, y = h'*rstd*(1+s)."""
        pid = tl.program_id(0).to(tl.int64)
        rows = pid * BLOCK_M + tl.arange(0, BLOCK_M)
        cols = tl.arange(0, BLOCK_N)
        rmask = rows < n_rows
        cmask = cols < H
        mask = rmask[:, None] & cmask[None, :]
        offs = rows[:, None] * H + cols[None, :]

        hv = _acc(tl.load(h_ptr + offs, mask=mask, other=0.0), IS_FP64)
        zv = _acc(tl.load(z_ptr + offs, mask=mask, other=0.0), IS_FP64)
        if A_MODE != 0:
            hv = hv * _load_coef(a_ptr, offs, cols, mask, cmask, A_MODE, IS_FP64)
        if B_MODE != 0:
            zv = zv * _load_coef(b_ptr, offs, cols, mask, cmask, B_MODE, IS_FP64)
        hn = hv + zv
        rstd = _rsqrt(tl.sum(hn * hn, axis=1) / H + eps, IS_FP64)
        y = hn * rstd[:, None]
        if S_MODE != 0:
            y = y * (1.0 + _load_coef(s_ptr, offs, cols, mask, cmask, S_MODE, IS_FP64))

        tl.store(hn_ptr + offs, hn.to(hn_ptr.dtype.element_ty), mask=mask)
        tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)
        tl.store(rstd_ptr + rows, rstd.to(rstd_ptr.dtype.element_ty), mask=rmask)

    @triton.jit
    def _junction_bwd_kernel(
        h_ptr, z_ptr, a_ptr, b_ptr, s_ptr, rstd_ptr, dhn_ptr, dy_ptr,
        dh_ptr, dz_ptr, da_ptr, db_ptr, ds_ptr,
        n_rows, H, tiles_per_prog,
        A_MODE: tl.constexpr, B_MODE: tl.constexpr, S_MODE: tl.constexpr,
        HAS_DHN: tl.constexpr, HAS_DY: tl.constexpr,
        NEED_DH: tl.constexpr, NEED_DZ: tl.constexpr, NEED_DA: tl.constexpr,
        NEED_DB: tl.constexpr, NEED_DS: tl.constexpr,
        IS_FP64: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    ):  # fmt: skip
        """One program = ``tiles_per_prog`` consecutive BLOCK_M-row tiles.

        Recomputes h' from the inputs, combines the residual gradient with the RMSNorm backward of
        ``dy`` (dh' = dh_new + rstd*(g - n*mean(g*n)), g = dy*(1+s), n = h'*rstd), then writes
        dh = a*dh', dz = b*dh' and per-element da/db/ds. Per-channel da/db/ds accumulate over this
        program's rows and are written as one partial row ``[pid, :]`` of an fp32 buffer.
        """
        pid = tl.program_id(0).to(tl.int64)
        cols = tl.arange(0, BLOCK_N)
        cmask = cols < H
        da_acc = _acc(tl.zeros((BLOCK_N,), tl.float32), IS_FP64)
        db_acc = _acc(tl.zeros((BLOCK_N,), tl.float32), IS_FP64)
        ds_acc = _acc(tl.zeros((BLOCK_N,), tl.float32), IS_FP64)
        for t in range(0, tiles_per_prog):
            rows = (pid * tiles_per_prog + t) * BLOCK_M + tl.arange(0, BLOCK_M)
            rmask = rows < n_rows
            mask = rmask[:, None] & cmask[None, :]
            offs = rows[:, None] * H + cols[None, :]

            hv = _acc(tl.load(h_ptr + offs, mask=mask, other=0.0), IS_FP64)
            zv = _acc(tl.load(z_ptr + offs, mask=mask, other=0.0), IS_FP64)
            ha = hv
            zb = zv
            if A_MODE != 0:
                av = _load_coef(a_ptr, offs, cols, mask, cmask, A_MODE, IS_FP64)
                ha = hv * av
            if B_MODE != 0:
                bv = _load_coef(b_ptr, offs, cols, mask, cmask, B_MODE, IS_FP64)
                zb = zv * bv
            hn = ha + zb

            dhp = hn * 0.0
            if HAS_DY:
                rstd = _acc(tl.load(rstd_ptr + rows, mask=rmask, other=0.0), IS_FP64)
                dy = _acc(tl.load(dy_ptr + offs, mask=mask, other=0.0), IS_FP64)
                nrm = hn * rstd[:, None]
                g = dy
                if S_MODE != 0:
                    g = dy * (1.0 + _load_coef(s_ptr, offs, cols, mask, cmask, S_MODE, IS_FP64))
                    if NEED_DS:
                        ds = dy * nrm
                        if S_MODE == 1:
                            ds_acc += tl.sum(ds, axis=0)
                        else:
                            tl.store(ds_ptr + offs, ds.to(ds_ptr.dtype.element_ty), mask=mask)
                c = tl.sum(g * nrm, axis=1) / H
                dhp = rstd[:, None] * (g - nrm * c[:, None])
            if HAS_DHN:
                dhp = dhp + _acc(tl.load(dhn_ptr + offs, mask=mask, other=0.0), IS_FP64)

            if NEED_DH:
                dh = dhp
                if A_MODE != 0:
                    dh = dhp * av
                tl.store(dh_ptr + offs, dh.to(dh_ptr.dtype.element_ty), mask=mask)
            if NEED_DZ:
                dz = dhp
                if B_MODE != 0:
                    dz = dhp * bv
                tl.store(dz_ptr + offs, dz.to(dz_ptr.dtype.element_ty), mask=mask)
            if NEED_DA:
                if A_MODE == 1:
                    da_acc += tl.sum(dhp * hv, axis=0)
                else:
                    tl.store(da_ptr + offs, (dhp * hv).to(da_ptr.dtype.element_ty), mask=mask)
            if NEED_DB:
                if B_MODE == 1:
                    db_acc += tl.sum(dhp * zv, axis=0)
                else:
                    tl.store(db_ptr + offs, (dhp * zv).to(db_ptr.dtype.element_ty), mask=mask)

        part = pid * H + cols
        if NEED_DA and A_MODE == 1:
            tl.store(da_ptr + part, da_acc, mask=cmask)
        if NEED_DB and B_MODE == 1:
            tl.store(db_ptr + part, db_acc, mask=cmask)
        if NEED_DS and S_MODE == 1:
            tl.store(ds_ptr + part, ds_acc, mask=cmask)


# ----------------------------------------------------------------------------------------------------
# Launch helpers + autograd Function
# ----------------------------------------------------------------------------------------------------


def _next_pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def _launch_settings(n_rows: int, hidden: int) -> tuple[int, int, int]:
    """``(BLOCK_M, BLOCK_N, num_warps)``: BLOCK_N = next pow2 of H; pack rows up to ~4K elements."""
    block_n = _next_pow2(hidden)
    block_m = max(1, min(4096 // block_n, 16, _next_pow2(n_rows)))
    tile = block_m * block_n
    num_warps = 4 if tile <= 2048 else 8 if tile <= 8192 else 16 if tile <= 32768 else 32
    return block_m, block_n, num_warps


def _num_bwd_programs(n_tiles: int, device: torch.device) -> int:
    """Persistent-style backward grid: a few programs per SM (few on CPU to keep the interpreter fast)."""
    if device.type == "cuda":
        cap = 8 * torch.cuda.get_device_properties(device).multi_processor_count
    else:
        cap = 4
    return max(1, min(n_tiles, cap))


def _coef_mode(t: torch.Tensor | None, n_rows: int, hidden: int) -> int:
    """0 = absent, 1 = per-channel ``(H,)``, 2 = per-element (``n_rows * H`` elements)."""
    if t is None:
        return _NONE
    if t.dim() == 1 and t.numel() == hidden:
        return _CHANNEL
    if t.numel() == n_rows * hidden:
        return _FULL
    raise ValueError(f"coefficient of shape {tuple(t.shape)} fits neither ({hidden},) nor the input")


def _flat(t: torch.Tensor | None, mode: int, hidden: int) -> torch.Tensor | None:
    if t is None:
        return None
    return t.reshape(-1).contiguous() if mode == _CHANNEL else t.reshape(-1, hidden).contiguous()


class JunctionFunction(torch.autograd.Function):
    """Fused junction: Triton forward/backward. Args ``(h, z, a, b, s, eps)`` with a/b/s None, (H,)
    or h-shaped (the :func:`junction` dispatcher normalises broadcastable shapes)."""

    @staticmethod
    def forward(ctx, h, z, a, b, s, eps):  # noqa: D401 - autograd signature
        shape, hidden = h.shape, h.shape[-1]
        h2 = h.reshape(-1, hidden).contiguous()
        z2 = z.reshape(-1, hidden).contiguous()
        n_rows = h2.shape[0]
        modes = tuple(_coef_mode(t, n_rows, hidden) for t in (a, b, s))
        a2, b2, s2 = (_flat(t, m, hidden) for t, m in zip((a, b, s), modes))
        is_fp64 = h.dtype == torch.float64
        hn = torch.empty_like(h2)
        y = torch.empty_like(h2)
        rstd = torch.empty(n_rows, device=h.device, dtype=torch.float64 if is_fp64 else torch.float32)
        block_m, block_n, num_warps = _launch_settings(n_rows, hidden)
        grid = (triton.cdiv(n_rows, block_m),)
        dummy = h2
        _junction_fwd_kernel[grid](
            h2, z2, dummy if a2 is None else a2, dummy if b2 is None else b2, dummy if s2 is None else s2,
            hn, y, rstd, n_rows, hidden, eps,
            A_MODE=modes[0], B_MODE=modes[1], S_MODE=modes[2], IS_FP64=is_fp64,
            BLOCK_M=block_m, BLOCK_N=block_n, num_warps=num_warps,
        )  # fmt: skip
        ctx.save_for_backward(h2, z2, a2, b2, s2, rstd)
        ctx.modes, ctx.shape, ctx.is_fp64 = modes, shape, is_fp64
        ctx.coef_meta = tuple(None if t is None else (t.shape, t.dtype) for t in (a, b, s))
        ctx.z_dtype = z.dtype
        ctx.set_materialize_grads(False)
        return hn.view(shape), y.view(shape)

    @staticmethod
    def backward(ctx, dhn, dy):
        h2, z2, a2, b2, s2, rstd = ctx.saved_tensors
        modes, shape, is_fp64 = ctx.modes, ctx.shape, ctx.is_fp64
        need_h, need_z, need_a, need_b, need_s = ctx.needs_input_grad[:5]
        n_rows, hidden = h2.shape
        acc = torch.float64 if is_fp64 else torch.float32
        if dhn is None and dy is None:
            return None, None, None, None, None, None
        need_a, need_b = need_a and modes[0] != _NONE, need_b and modes[1] != _NONE
        need_s = need_s and modes[2] != _NONE
        need_s_kernel = need_s and dy is not None  # without dy the s-gradient is exactly zero

        block_m, block_n, num_warps = _launch_settings(n_rows, hidden)
        n_tiles = triton.cdiv(n_rows, block_m)
        n_prog = _num_bwd_programs(n_tiles, h2.device)
        tiles_per_prog = triton.cdiv(n_tiles, n_prog)
        n_prog = triton.cdiv(n_tiles, tiles_per_prog)

        def grad_buf(mode: int, coef: torch.Tensor) -> torch.Tensor:
            if mode == _CHANNEL:
                return torch.empty(n_prog, hidden, device=h2.device, dtype=acc)
            return torch.empty_like(coef)

        dummy = h2
        dh = torch.empty_like(h2) if need_h else dummy
        dz = torch.empty_like(z2) if need_z else dummy
        da = grad_buf(modes[0], a2) if need_a else dummy
        db = grad_buf(modes[1], b2) if need_b else dummy
        ds = grad_buf(modes[2], s2) if need_s_kernel else dummy
        dhn2 = dhn.reshape(-1, hidden).contiguous() if dhn is not None else dummy
        dy2 = dy.reshape(-1, hidden).contiguous() if dy is not None else dummy
        _junction_bwd_kernel[(n_prog,)](
            h2, z2, dummy if a2 is None else a2, dummy if b2 is None else b2,
            dummy if s2 is None else s2, rstd, dhn2, dy2,
            dh, dz, da, db, ds, n_rows, hidden, tiles_per_prog,
            A_MODE=modes[0], B_MODE=modes[1], S_MODE=modes[2],
            HAS_DHN=dhn is not None, HAS_DY=dy is not None,
            NEED_DH=need_h, NEED_DZ=need_z, NEED_DA=need_a, NEED_DB=need_b, NEED_DS=need_s_kernel,
            IS_FP64=is_fp64, BLOCK_M=block_m, BLOCK_N=block_n, num_warps=num_warps,
        )  # fmt: skip

        def finish(need: bool, mode: int, buf: torch.Tensor, meta) -> torch.Tensor | None:
            if not need:
                return None
            c_shape, c_dtype = meta
            if mode == _CHANNEL:
                buf = buf.sum(0)
            return buf.to(c_dtype).view(c_shape)

        grad_s = finish(need_s_kernel, modes[2], ds, ctx.coef_meta[2])
        if need_s and not need_s_kernel:
            grad_s = torch.zeros(ctx.coef_meta[2][0], dtype=ctx.coef_meta[2][1], device=h2.device)
        return (
            dh.view(shape) if need_h else None,
            dz.view(shape) if need_z else None,
            finish(need_a, modes[0], da, ctx.coef_meta[0]),
            finish(need_b, modes[1], db, ctx.coef_meta[1]),
            grad_s,
            None,
        )


# ----------------------------------------------------------------------------------------------------
# Public entry points
# ----------------------------------------------------------------------------------------------------


def _normalise_coef(t: torch.Tensor | None, h: torch.Tensor, name: str) -> torch.Tensor | None:
    """Per-channel (any shape with H elements broadcastable to h) -> (H,); other broadcastable -> h-shaped."""
    if t is None:
        return None
    hidden = h.shape[-1]
    try:
        torch.broadcast_shapes(t.shape, h.shape)
    except RuntimeError as err:
        raise ValueError(f"{name} of shape {tuple(t.shape)} does not broadcast to {tuple(h.shape)}") from err
    if t.shape == h.shape:
        return t
    if t.numel() == hidden and t.shape[-1] == hidden:
        return t.reshape(hidden)
    return t.expand(h.shape)  # e.g. (B, 1, H): autograd sums the expanded gradient back


def junction_triton(
    h: torch.Tensor,
    z: torch.Tensor,
    a: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    s: torch.Tensor | None = None,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused Triton junction (differentiable in every input); returns ``(h_new, y)``.

    Raises RuntimeError when Triton is missing, when CPU tensors are passed without
    ``TRITON_INTERPRET=1`` in effect, or when ``H > MAX_FUSED_HIDDEN``.
    """
    if not HAS_TRITON:
        from benchgen.install import install_hint

        raise RuntimeError(
            "junction backend 'triton' requested but triton is not importable; "
            f"install it with `{install_hint('kernels')}` (Linux) or use backend='torch'"
        )
    if h.shape != z.shape:
        raise ValueError(f"h and z must have the same shape, got {tuple(h.shape)} and {tuple(z.shape)}")
    if not h.is_cuda and not _interpreting():
        raise RuntimeError(
            "Triton junction on CPU tensors needs the interpreter: set TRITON_INTERPRET=1 before "
            "importing reference_models.kernels, or use backend='torch'"
        )
    if h.shape[-1] > MAX_FUSED_HIDDEN:
        raise RuntimeError(f"hidden size {h.shape[-1]} exceeds MAX_FUSED_HIDDEN={MAX_FUSED_HIDDEN}")
    if h.numel() == 0:
        return junction_reference(h, z, a, b, s, eps)
    a, b, s = (_normalise_coef(t, h, n) for t, n in ((a, "a"), (b, "b"), (s, "s")))
    return JunctionFunction.apply(h, z, a, b, s, float(eps))


def _interpreting() -> bool:
    """True when the kernels were decorated under ``TRITON_INTERPRET=1`` (run on CPU via numpy)."""
    return HAS_TRITON and type(_junction_fwd_kernel).__name__ == "InterpretedFunction"


def select_backend(h: torch.Tensor, backend: str | None = None) -> str:
    """Resolve ``'triton'`` or ``'torch'``: explicit ``backend``, else ``$BENCHGEN_KERNEL``, else auto.

    Auto picks Triton for CUDA tensors with H <= MAX_FUSED_HIDDEN when Triton imports.
    """
    choice = backend if backend is not None else os.environ.get("BENCHGEN_KERNEL", "auto")
    choice = (choice or "auto").strip().lower()
    if choice not in _BACKENDS:
        raise ValueError(f"unknown junction backend {choice!r}; expected one of {_BACKENDS}")
    if choice == "auto":
        ok = HAS_TRITON and h.is_cuda and 0 < h.shape[-1] <= MAX_FUSED_HIDDEN
        return "triton" if ok else "torch"
    return choice


def junction(
    h: torch.Tensor,
    z: torch.Tensor,
    a: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    s: torch.Tensor | None = None,
    eps: float = 1e-6,
    *,
    backend: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dispatching junction used by the model; returns ``(h_new, y)``.

    ``backend``: ``'triton'``, ``'torch'``, ``'auto'`` or None (= ``$BENCHGEN_KERNEL``, default auto).
    """
    if select_backend(h, backend) == "triton":
        return junction_triton(h, z, a, b, s, eps)
    return junction_reference(h, z, a, b, s, eps)
