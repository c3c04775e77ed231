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


def rotary(length: int, dim: int, device: torch.device, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables (L, dim/2) for rotary position embeddings."""
    inv = 1.0 / base ** (torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim)
    ang = torch.outer(torch.arange(length, device=device, dtype=torch.float32), inv)
    return ang.cos(), ang.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return out.flatten(-2).to(x.dtype)


def sinusoid(x: torch.Tensor, dim: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Sinusoidal embedding of scalars in [0, 1] (LoopFormer's time / step-size features)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=x.device, dtype=torch.float32) / half)
    ang = (x.float() * 1000.0)[..., None] * freqs
    return torch.cat([ang.sin(), ang.cos()], dim=-1).to(dtype)


class Attention(nn.Module):
    """Causal multi-head self-attention (right padding needs no mask: pads come after the tokens)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, y: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        B, L, D = y.shape
        q, k, v = self.qkv(y).view(B, L, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.drop(self.proj(out.transpose(1, 2).reshape(B, L, D)))


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

    def forward(self, h, y, s_next, mod, rope):
        g_a = g_m = None
        s_mlp = self.s_mlp
        if mod is not None:  # LoopFormer: zero-initialised gates, modulated norm scales
            g_a, g_m, s_mlp = mod[0], mod[1], self.s_mlp + mod[3]
        h, y = self.junction(h, self.attn(y, rope), b=g_a, s=s_mlp)
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
        x = self.wte(idx)
        if self.cfg.positions == "learned":
            if idx.shape[1] > self.cfg.max_len:
                raise ValueError(f"sequence length {idx.shape[1]} exceeds the model's max_len {self.cfg.max_len}")
            x = x + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        return x

    def run(self, layers, h, y, s_out, rope, mods=None):
        """Run a stack of layers from ``(h, y)``; the returned ``y`` is normalised with ``s_out``."""
        for i, layer in enumerate(layers):
            nxt = layers[i + 1].s_in(mods[i + 1] if mods else None) if i + 1 < len(layers) else s_out
            h, y = layer(h, y, nxt, mods[i] if mods else None, rope)
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
                step: float | None = None):
        """One loop iteration: inject e into h, run the block. Returns (h, y, y_is_exit_norm)."""
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
        h, y = self.run(self.block, h, y, s_out, rope, mods)
        return h, y, not fuse_next

    def readout(self, h, y, at: torch.Tensor | None = None) -> torch.Tensor:
        """(C ->) coda -> final norm -> head; ``at`` (B,) picks one position per row before the head."""
        if self.cfg.exit_proj:
            h = self.C(h)
            y = rmsnorm(h, self.s_exit(), self.cfg.eps)
        if len(self.coda):
            h, y = self.run(self.coda, h, y, self.s_final, self._rope)
        if at is not None:
            y = y[torch.arange(y.shape[0], device=y.device), at]
        return self.head(y)

    # --- forward ----------------------------------------------------------------------------
    def forward(self, idx: torch.Tensor, loops: int | None = None, readout: str = "last",
                backprop_last: int = 0, at: torch.Tensor | None = None, return_state: bool = False,
                row_loops: torch.Tensor | None = None, route: list[float] | None = None,
                loop_states: bool = False):
        """Logits ``(B, L, V)`` (``readout="last"``) or ``(T, B, L, V)`` after every iteration ("all").

        ``at`` (B,) returns only one position per row: ``(B, V)`` / ``(T, B, V)``.
        ``backprop_last=m`` (0 < m < T): the first T-m iterations build no graph.
        ``return_state``: also return the final loop state ``h`` (for consistency losses).
        ``row_loops`` (B,): each row stops at its own T (Parcae's T per sequence; T = the max);
        with ``backprop_last=m`` each row gets gradients through its own last m iterations.
        ``route``: LoopFormer step sizes (summing to 1) instead of T uniform steps of 1/T.
        ``loop_states`` (with ``readout="all"``): also return the loop state ``h`` after every iteration,
        ``(T, B, L, D)`` (``(T, B, D)`` with ``at``), e.g. for latent-diff exit rules and probes.
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
        L = idx.shape[1]
        self._rope = None
        if cfg.positions == "rotary":
            self._rope = rotary(L, cfg.d_model // cfg.n_heads, idx.device)
        x = self.embed(idx)
        if len(self.prelude):
            x, _ = self.run(self.prelude, x, rmsnorm(x, self.prelude[0].s_attn, cfg.eps), self.s_final, self._rope)
        e = x
        if cfg.state_init == "noise":  # truncated normal, as Parcae/Huginn start the recurrence
            h = nn.init.trunc_normal_(torch.empty_like(e), std=1.0, a=-2.0, b=2.0)
        else:
            h = e if cfg.injection == "none" else torch.zeros_like(e)
        per_row = row_loops is not None
        start = T - backprop_last if 0 < backprop_last < T and not per_row else 0
        times = None
        if route is not None:
            times = [float(sum(route[:t])) for t in range(T)]
        grad_on = torch.is_grad_enabled()
        outs, y, y_exit, states = [], None, None, []
        for t in range(T):
            want = readout == "all" or t == T - 1
            fuse = (not want and not per_row and cfg.injection == "none" and cfg.conditioning == "none"
                    and t + 1 != start)
            with torch.set_grad_enabled(grad_on and t >= start):
                h_prev = h
                h, y, is_exit = self.iterate(h, e, y, t, T, self._rope, fuse,
                                             None if times is None else times[t],
                                             None if route is None else float(route[t]))
                if per_row:  # rows past their own T keep their state; early iterations carry no gradient
                    keep = (t < row_loops.to(h.device))[:, None, None]
                    if t > 0:
                        h, y = torch.where(keep, h, h_prev), torch.where(keep, y, y_exit)
                    if backprop_last and grad_on:
                        stop = (t < row_loops.to(h.device) - backprop_last)[:, None, None]
                        h, y = torch.where(stop, h.detach(), h), torch.where(stop, y.detach(), y)
                    y_exit = y  # fuse is off per row, so y is normalised for the exit
            if want:
                outs.append(self.readout(h, y, at))
                if loop_states:
                    states.append(h if at is None else h[torch.arange(h.shape[0], device=h.device), at])
            if is_exit:
                y = None  # y was normalised for the readout, not for the next iteration
        logits = outs[-1] if readout == "last" else torch.stack(outs)
        if loop_states:
            return logits, torch.stack(states)
        return (logits, h) if return_state else logits
