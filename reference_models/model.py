"""The reference looped (recurrent-depth) transformer, readable top to bottom.

    tokens -> embedding (+ learned positions) -> prelude layers (once)
           -> [ injection -> block of k layers ] x T          (T = loops; T=1 is the vanilla model)
           -> coda layers (once) -> RMSNorm(1+s) -> head

Every residual junction goes through ``reference_models.kernels.junction``:
``h' = a*h + b*z ; y = RMSNorm(h') * (1 + s)`` — the residual add fused with the *next*
sublayer's norm. A layer therefore receives ``(h, y)`` where ``y`` is its normalised input, and
hands back ``(h, y)`` normalised for whatever comes next (``s_next``). The norms have no affine
weight of their own: ``(1 + s)`` is the learnable scale (``s`` a zero-initialised parameter per
channel, plus LoopFormer's time/step modulation when enabled). Input injection is a junction too:

- add:    ``junction(h, e)``                        (h + e)
- concat: ``junction(W_h h, W_e e)``                (Huginn adapter W[h; e], written as two halves)
- parcae: ``junction(h, B e, a=exp(-Δ⊙A), b=Δ)``    (stable: every exp(-Δ⊙A) < 1)

The model can read out a prediction after every iteration (``readout="all"``), so a sweep of
T = 1..T_max costs one forward pass of T_max loops. Truncated backprop (``backprop_last=m``) runs
the first T-m iterations without building a graph (Huginn / Parcae).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchgen.reference_models.config import ModelConfig
from benchgen.reference_models.kernels import junction as _junction


def rmsnorm(x: torch.Tensor, s: torch.Tensor | None, eps: float) -> torch.Tensor:
    """Plain RMSNorm(x)*(1+s) for the few norms that follow no residual add (loop entry)."""
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    xf = x.to(acc)
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (y if s is None else y * (1 + s.to(acc))).to(x.dtype)


def rotary(length: int, dim: int, device: torch.device, base: float = 10000.0,
           positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables (L, dim/2) for rotary position embeddings at positions 0..L-1, or (B, L, dim/2)
    at given per-row ``positions`` (B, L)."""
    inv = 1.0 / base ** (torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim)
    pos = torch.arange(length, device=device, dtype=torch.float32) if positions is None else positions.float()
    ang = pos[..., None] * inv
    return ang.cos(), ang.sin()


def random_positions(rows: int, length: int, span: int, device: torch.device) -> torch.Tensor:
    """Randomised positions (Ruoss et al. 2023): per row, a sorted uniform sample of ``length`` distinct
    positions from [0, span), so that training sees every relative offset up to ``span`` - 1 while the
    order of the tokens is kept (evaluation uses 0..L-1). Drawn from torch's generator (the run's seed)."""
    return torch.rand(rows, span, device=device).argsort(-1)[:, :length].sort(-1).values


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the channel pairs ``(x[2i], x[2i+1])`` of ``x (..., L, dim)`` by the angles of ``cos``/``sin`` (L, dim/2)."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return out.flatten(-2).to(x.dtype)


def rotary_qk(qkv: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v ``(B, heads, L, dim)`` from ``qkv (B, L, 3, heads, dim)``, q and k rotated (rotary).

    fp32/fp64 rotate q and k together as complex numbers (one multiply forward and backward instead of
    the ~10 strided passes of :func:`apply_rotary`, which the other dtypes use); the same rotation.
    """
    if rope is None:
        return qkv.permute(2, 0, 3, 1, 4).unbind(0)
    cos, sin = rope  # (L, dim/2), or (B, L, dim/2) per row (randomised positions)
    if qkv.dtype not in (torch.float32, torch.float64):
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        if cos.dim() == 3:
            cos, sin = cos[:, None], sin[:, None]
        return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), v
    qk = qkv[:, :, :2]
    turn = torch.complex(cos.to(qkv.dtype), sin.to(qkv.dtype))
    turn = turn[:, :, None, None, :] if turn.dim() == 3 else turn[None, :, None, None, :]
    qk = torch.view_as_real(torch.view_as_complex(qk.reshape(*qk.shape[:-1], -1, 2)) * turn).flatten(-2)
    q, k = qk.permute(2, 0, 3, 1, 4)
    return q, k, qkv[:, :, 2].transpose(1, 2)


def sinusoid(x: torch.Tensor, dim: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Sinusoidal embedding of scalars in [0, 1] (LoopFormer's time / step-size features)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=x.device, dtype=torch.float32) / half)
    ang = (x.float() * 1000.0)[..., None] * freqs
    return torch.cat([ang.sin(), ang.cos()], dim=-1).to(dtype)


@dataclass
class Packed:
    """Right-padded rows packed to their real tokens: what token-wise layers see is ``(N, D)``.

    ``flat`` is each real token's index in the ``(B * L)`` padded grid (row-major), so projections,
    MLPs and junctions compute nothing for the padding after a row's end; attention scatters its
    q/k/v back onto the grid (zeros at padding, which causal attention never lets a real token see).
    ``keep`` (packed token indices) are the scored positions: the network's last layer runs only there.
    """

    flat: torch.Tensor
    pos: torch.Tensor
    shape: tuple[int, int]
    keep: torch.Tensor

    def unpack(self, packed: torch.Tensor, scored: bool = False) -> torch.Tensor:
        """Packed values ``(N, ...)`` (or ``(len(keep), ...)`` when ``scored``) back on the
        ``(B, L, ...)`` grid, zeros elsewhere."""
        B, L = self.shape
        out = packed.new_zeros((B * L, *packed.shape[1:]))
        index = self.flat[self.keep] if scored else self.flat
        return out.index_copy(0, index, packed).view(B, L, *packed.shape[1:])


def pack(scored: torch.Tensor) -> Packed:
    """The :class:`Packed` layout of a ``(B, L)`` grid whose rows end at their last ``scored`` position."""
    B, L = scored.shape
    pos = torch.arange(L, device=scored.device)
    lengths = L - scored.flip(1).to(torch.int32).argmax(1)  # no scored position: the whole row
    real = (pos[None, :] < lengths[:, None]).reshape(-1)
    flat = torch.nonzero(real).squeeze(1)
    return Packed(flat, pos.repeat(B)[flat], (B, L), torch.nonzero(scored.reshape(-1)[flat]).squeeze(1))


class Attention(nn.Module):
    """Causal multi-head self-attention (right padding needs no mask: pads come after the tokens).

    Takes ``(B, L, D)`` rows with the rotary tables (or None), or ``(N, D)`` packed tokens with
    ``(Packed, rotary tables)``.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, y: torch.Tensor, rope, keep: bool = False) -> torch.Tensor:
        """Attention output; packed with ``keep``: only at the packed layout's scored tokens."""
        if rope is not None and isinstance(rope[0], Packed):
            return self.packed(y, *rope, keep)
        B, L, D = y.shape
        q, k, v = rotary_qk(self.qkv(y).view(B, L, 3, self.n_heads, D // self.n_heads), rope)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.drop(self.proj(out.transpose(1, 2).reshape(B, L, D)))

    def packed(self, y: torch.Tensor, p: Packed, rope: tuple[torch.Tensor, torch.Tensor] | None,
               keep: bool = False) -> torch.Tensor:
        """Attention over packed tokens ``(N, D)``: projections on the real tokens only, attention on the grid."""
        B, L = p.shape
        D = y.shape[-1]
        q, k, v = rotary_qk(p.unpack(self.qkv(y)).view(B, L, 3, self.n_heads, D // self.n_heads), rope)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.drop(self.proj(out.transpose(1, 2).reshape(B * L, D)[p.flat[p.keep] if keep else p.flat]))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.ff, bias=False)
        self.proj = nn.Linear(cfg.ff, cfg.d_model, bias=False)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(y))))


class Layer(nn.Module):
    """Pre-norm transformer layer; both residual adds are junctions fused with the next norm."""

    def __init__(self, cfg: ModelConfig, junction):
        super().__init__()
        self.attn, self.mlp, self.junction = Attention(cfg), MLP(cfg), junction
        self.s_attn = nn.Parameter(torch.zeros(cfg.d_model))  # scale (1+s) of the norm before attn
        self.s_mlp = nn.Parameter(torch.zeros(cfg.d_model))   # scale (1+s) of the norm before mlp

    def s_in(self, mod: tuple[torch.Tensor, ...] | None) -> torch.Tensor:
        """Scale of this layer's input norm (applied by whoever produced its ``y``)."""
        return self.s_attn if mod is None else self.s_attn + mod[2]

    def forward(self, h, y, s_next, mod, rope, keep: bool = False):
        """``(h, y)`` after attention and MLP; ``keep`` (packed rows): only at the scored tokens."""
        g_a = g_m = None
        s_mlp = self.s_mlp
        if mod is not None:  # LoopFormer: zero-initialised gates, modulated norm scales
            g_a, g_m, s_mlp = mod[0], mod[1], self.s_mlp + mod[3]
        a = self.attn(y, rope, keep)
        h, y = self.junction(h[rope[0].keep] if keep else h, a, b=g_a, s=s_mlp)
        h, y = self.junction(h, self.mlp(y), b=g_m, s=s_next)
        return h, y


class LoopedTransformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        cfg.validate()
        if cfg.vocab_size < 1:
            raise ValueError("ModelConfig.vocab_size must be set (>= 1) before building the model")
        self.cfg = cfg
        D = cfg.d_model
        backend = None if cfg.kernel == "auto" else cfg.kernel

        def junction(h, z, a=None, b=None, s=None):
            return _junction(h, z, a, b, s, cfg.eps, backend=backend)

        self.junction = junction
        self.wte = nn.Embedding(cfg.vocab_size, D)
        if cfg.positions == "learned":
            if cfg.max_len < 1:
                raise ValueError("learned positions need ModelConfig.max_len >= 1")
            self.wpe = nn.Embedding(cfg.max_len, D)
        self.prelude = nn.ModuleList(Layer(cfg, junction) for _ in range(cfg.n_prelude))
        self.block = nn.ModuleList(Layer(cfg, junction) for _ in range(cfg.n_block))
        self.coda = nn.ModuleList(Layer(cfg, junction) for _ in range(cfg.n_coda))
        self.s_final = nn.Parameter(torch.zeros(D))
        if cfg.exit_proj:
            self.C = nn.Linear(D, D, bias=False)  # Parcae: linear C on the loop state before the coda
        self.head = nn.Linear(D, cfg.vocab_size, bias=False)
        # input injection
        if cfg.injection == "concat":
            self.adapt_h, self.adapt_e = nn.Linear(D, D, bias=False), nn.Linear(D, D, bias=False)
        elif cfg.injection == "parcae":
            self.A_log = nn.Parameter(torch.zeros(D))                        # A = exp(A_log) > 0
            # Δ = softplus(dt_bias) = ln(5)/2, so the decay exp(-Δ·A) starts at sqrt(1/5) (Parcae's init)
            self.dt_bias = nn.Parameter(torch.full((D,), math.log(math.sqrt(5.0) - 1)))
            self.B = nn.Linear(D, D, bias=False)
        # LoopFormer conditioning on time t and step size Δt
        if cfg.conditioning == "loopformer":
            self.time_mlp = nn.Sequential(nn.Linear(D, D), nn.SiLU(), nn.Linear(D, D))
            self.step_mlp = nn.Sequential(nn.Linear(D, D), nn.SiLU(), nn.Linear(D, D))
            self.mod = nn.Linear(D, cfg.n_block * 4 * D)
        self._init_weights()

    def _init_weights(self) -> None:
        cfg = self.cfg
        depth = cfg.n_prelude + cfg.n_block * cfg.loops + cfg.n_coda
        for name, p in self.named_parameters():
            if p.dim() < 2:
                continue
            if name.endswith(("attn.proj.weight", "mlp.proj.weight")):
                if cfg.zero_init_out:
                    nn.init.zeros_(p)
                else:
                    nn.init.normal_(p, std=0.02 / math.sqrt(2 * depth))
            else:
                nn.init.normal_(p, std=0.02)
        if cfg.injection == "concat":
            nn.init.eye_(self.adapt_h.weight)
            nn.init.eye_(self.adapt_e.weight)
        if cfg.injection == "parcae":
            nn.init.eye_(self.B.weight)
        if cfg.exit_proj:
            nn.init.eye_(self.C.weight)
        if cfg.conditioning == "loopformer":
            nn.init.zeros_(self.mod.weight)
            nn.init.zeros_(self.mod.bias)
        if cfg.tie_embeddings:
            self.head.weight = self.wte.weight

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # --- pieces -----------------------------------------------------------------------------
    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        """Token (+ learned position) embeddings ``(B, L, D)``."""
        x = self.wte(idx)
        if self.cfg.positions == "learned":
            if idx.shape[1] > self.cfg.max_len:
                raise ValueError(f"sequence length {idx.shape[1]} exceeds the model's max_len {self.cfg.max_len}")
            x = x + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        return x

    def embed_packed(self, idx: torch.Tensor, packed: Packed) -> torch.Tensor:
        """:meth:`embed` of the packed tokens only, ``(N, D)``."""
        if self.cfg.positions == "learned" and idx.shape[1] > self.cfg.max_len:
            raise ValueError(f"sequence length {idx.shape[1]} exceeds the model's max_len {self.cfg.max_len}")
        x = self.wte(idx.reshape(-1)[packed.flat])
        return x + self.wpe(packed.pos) if self.cfg.positions == "learned" else x

    def layout(self, idx: torch.Tensor, scored: torch.Tensor | None) -> Packed | None:
        """The packed layout of ``idx`` given its scored positions (None: run the padded grid); sets
        ``self._rope``, what layers get as positions: the rotary tables, with the layout when packed."""
        L, cfg = idx.shape[1], self.cfg
        rope = None
        if cfg.positions == "rotary":
            randomised = self.training and cfg.rope_random_max > L
            pos = random_positions(idx.shape[0], L, cfg.rope_random_max, idx.device) if randomised else None
            rope = rotary(L, cfg.d_model // cfg.n_heads, idx.device, positions=pos)
        if scored is None:
            self._rope = rope
            return None
        p = pack(scored.to(idx.device))
        self._rope = (p, rope)
        return p

    def run(self, layers, h, y, s_out, rope, mods=None, keep: bool = False):
        """Run a stack of layers from ``(h, y)``; the returned ``y`` is normalised with ``s_out``.

        ``keep`` (packed rows only): the last layer runs only at the scored tokens, and so returns."""
        for i, layer in enumerate(layers):
            last = i + 1 == len(layers)
            nxt = s_out if last else layers[i + 1].s_in(mods[i + 1] if mods else None)
            h, y = layer(h, y, nxt, mods[i] if mods else None, rope, keep and last)
        return h, y

    def modulation(self, t: int, T: int, time: float | None = None,
                   step: float | None = None) -> list[tuple[torch.Tensor, ...]] | None:
        """LoopFormer: per block layer (g_attn, g_mlp, s_attn, s_mlp) from time t/T and step 1/T
        (or an explicit ``time`` and ``step`` on a non-uniform route)."""
        if self.cfg.conditioning != "loopformer":
            return None
        D = self.cfg.d_model
        dev, dt = self.s_final.device, self.s_final.dtype
        time = t / T if time is None else time
        step = 1.0 / T if step is None else step
        c = self.time_mlp(sinusoid(torch.tensor(time, device=dev), D, dt)) + \
            self.step_mlp(sinusoid(torch.tensor(step, device=dev), D, dt))
        m = self.mod(F.silu(c)).view(self.cfg.n_block, 4, D)
        return [tuple(m[j, i] for i in range(4)) for j in range(self.cfg.n_block)]

    def s_exit(self) -> torch.Tensor:
        """Scale of the norm after the loop: the coda's first layer, else the final norm."""
        return self.coda[0].s_in(None) if len(self.coda) else self.s_final

    def iterate(self, h, e, y, t: int, T: int, rope, fuse_next: bool, time: float | None = None,
                step: float | None = None, keep: bool = False):
        """One loop iteration: inject e into h, run the block. Returns (h, y, y_is_exit_norm).
        ``keep``: the block's last layer runs only at the scored tokens (the network's last layer)."""
        cfg = self.cfg
        mods = self.modulation(t, T, time, step)
        s_first = self.block[0].s_in(mods[0] if mods else None)
        if cfg.injection == "none":
            if y is None:  # not fused with the previous iteration's last junction
                y = rmsnorm(h, s_first, cfg.eps)
        elif cfg.injection == "add":
            h, y = self.junction(h, e, s=s_first)
        elif cfg.injection == "concat":
            h, y = self.junction(self.adapt_h(h), self.adapt_e(e), s=s_first)
        else:  # parcae
            delta = F.softplus(self.dt_bias)
            h, y = self.junction(h, self.B(rmsnorm(e, None, cfg.eps)), a=torch.exp(-delta * self.A_log.exp()),
                                 b=delta)
        # fuse the last junction with the next iteration's entry norm when nobody reads out here
        s_out = self.block[0].s_attn if fuse_next else self.s_exit()
        h, y = self.run(self.block, h, y, s_out, rope, mods, keep)
        return h, y, not fuse_next

    def readout(self, h, y, at: torch.Tensor | None = None, keep: bool = False) -> torch.Tensor:
        """(C ->) coda -> final norm -> head; ``at`` (B,) picks one position per row before the head;
        ``keep``: the coda's last layer runs only at the packed layout's scored tokens."""
        if self.cfg.exit_proj:
            h = self.C(h)
            y = rmsnorm(h, self.s_exit(), self.cfg.eps)
        if len(self.coda):
            h, y = self.run(self.coda, h, y, self.s_final, self._rope, keep=keep)
        if at is not None:
            y = y[torch.arange(y.shape[0], device=y.device), at]
        return self.head(y)

    # --- forward ----------------------------------------------------------------------------
    def forward(self, idx: torch.Tensor, loops: int | None = None, readout: str = "last",
                backprop_last: int = 0, at: torch.Tensor | None = None, return_state: bool = False,
                row_loops: torch.Tensor | None = None, route: list[float] | None = None,
                loop_states: bool = False, scored: torch.Tensor | None = None):
        """Logits ``(B, L, V)`` (``readout="last"``) or ``(T, B, L, V)`` after every iteration ("all").

        ``at`` (B,) returns only one position per row: ``(B, V)`` / ``(T, B, V)``.
        ``backprop_last=m`` (0 < m < T): the first T-m iterations build no graph.
        ``return_state``: also return the final loop state ``h`` (for consistency losses).
        ``row_loops`` (B,): each row stops at its own T (Parcae's T per sequence; T = the max);
        with ``backprop_last=m`` each row gets gradients through its own last m iterations.
        ``route``: LoopFormer step sizes (summing to 1) instead of T uniform steps of 1/T.
        ``loop_states`` (with ``readout="all"``): also return the loop state ``h`` after every iteration,
        ``(T, B, L, D)`` (``(T, B, D)`` with ``at``), e.g. for latent-diff exit rules and probes.
        ``scored`` (B, L) bool: the only positions whose logits (and state) the caller reads (a loss
        mask). Tokens after a row's last scored position are not computed (rows are packed to their
        real tokens), and with ``readout="last"`` the network's last layer runs only at scored
        positions; logits and state elsewhere are zero. Scored values are the same function of the
        tokens as without it. Ignored with ``at`` or ``row_loops``; not with ``loop_states``.
        """
        cfg = self.cfg
        if route is not None:
            loops = len(route)
        if row_loops is not None:
            loops = int(row_loops.max())
            if readout != "last":
                raise ValueError("row_loops needs readout='last'")
        T = cfg.loops if loops is None else int(loops)
        if T < 1:
            raise ValueError(f"loops must be >= 1, got {T}")
        if readout not in ("last", "all"):
            raise ValueError(f"readout must be 'last' or 'all', got {readout!r}")
        packed = self.layout(idx, scored if at is None and row_loops is None and not loop_states else None)
        x = self.embed(idx) if packed is None else self.embed_packed(idx, packed)
        if len(self.prelude):
            x, _ = self.run(self.prelude, x, rmsnorm(x, self.prelude[0].s_attn, cfg.eps), self.s_final, self._rope)
        e = x
        if cfg.state_init == "noise":  # truncated normal, as Parcae/Huginn start the recurrence
            h = nn.init.trunc_normal_(e.new_empty((*idx.shape, e.shape[-1])), std=1.0, a=-2.0, b=2.0)
            if packed is not None:  # the padded grid's draws at the real tokens: packing changes no value
                h = h.reshape(-1, e.shape[-1])[packed.flat]
        else:
            h = e if cfg.injection == "none" else torch.zeros_like(e)
        per_row = row_loops is not None
        start = T - backprop_last if 0 < backprop_last < T and not per_row else 0
        times = None
        if route is not None:
            times = [float(sum(route[:t])) for t in range(T)]
        grad_on = torch.is_grad_enabled()
        outs, y, y_exit, states = [], None, None, []
        # the network's last layer (the block's in the last iteration, else the coda's) runs only at scored tokens
        narrow = packed is not None and readout == "last"
        for t in range(T):
            want = readout == "all" or t == T - 1
            fuse = (not want and not per_row and cfg.injection == "none" and cfg.conditioning == "none"
                    and t + 1 != start)
            with torch.set_grad_enabled(grad_on and t >= start):
                h_prev = h
                h, y, is_exit = self.iterate(h, e, y, t, T, self._rope, fuse,
                                             None if times is None else times[t],
                                             None if route is None else float(route[t]),
                                             keep=narrow and t == T - 1 and not len(self.coda))
                if per_row:  # rows past their own T keep their state; early iterations carry no gradient
                    keep = (t < row_loops.to(h.device))[:, None, None]
                    if t > 0:
                        h, y = torch.where(keep, h, h_prev), torch.where(keep, y, y_exit)
                    if backprop_last and grad_on:
                        stop = (t < row_loops.to(h.device) - backprop_last)[:, None, None]
                        h, y = torch.where(stop, h.detach(), h), torch.where(stop, y.detach(), y)
                    y_exit = y  # fuse is off per row, so y is normalised for the exit
            if want:
                out = self.readout(h, y, at, keep=narrow and len(self.coda) > 0)
                outs.append(out if packed is None else packed.unpack(out, scored=narrow))
                if loop_states:
                    states.append(h if at is None else h[torch.arange(h.shape[0], device=h.device), at])
            if is_exit:
                y = None  # y was normalised for the readout, not for the next iteration
        logits = outs[-1] if readout == "last" else torch.stack(outs)
        if loop_states:
            return logits, torch.stack(states)
        if return_state and packed is not None:
            h = packed.unpack(h, scored=narrow and not len(self.coda))  # the loop state, before any coda
        return (logits, h) if return_state else logits
