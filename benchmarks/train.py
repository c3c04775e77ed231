"""Training throughput on CPU against a plain PyTorch nanoGPT-style loop of the same size, one run.

    python benchmarks/train.py                       # cpu-depth-looped shapes, 1 thread, best of 3
    python benchmarks/train.py --presets cpu-khop-looped,cpu-depth-looped --steps 30

For each preset: batches shaped like its CPU reproduction data (``cpu-depth-*``: khop-depth-small
at its deepest curriculum hop, rows of 2..7 positions drawn uniformly by depth, padded to 7, the
answer at each row's last position; ``cpu-khop-*``: 6 positions; ``cpu-addition-*``: 16), the full
optimizer step (forward, backward, AdamW) timed after warm-up, best of ``--repeats`` with the spread
(the two models' repeats interleaved, so a change in the machine's load hits both alike).
Beside it, in the same process on the same batches, a nanoGPT-style model written the plain way
(LayerNorm, fused qkv, ``scaled_dot_product_attention``, GELU MLP, learned positions, tied head;
``T`` distinct layers for the looped model's ``T`` iterations: the same FLOPs per token) with
cross-entropy on the same answer positions. Tokens/s counts real (unpadded) tokens for both;
target: reference model >= 1x the nanoGPT loop (MET / MISSED). CUDA is added when present.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

SHAPES = {"khop": (6, 58), "addition": (16, 16), "depth": (7, 40)}  # (padded positions, vocab size)


class Block(nn.Module):
    """nanoGPT's block: pre-LayerNorm attention and MLP with plain residual adds."""

    def __init__(self, d: int, heads: int, ff: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d, bias=False), nn.Linear(d, d, bias=False)
        self.fc, self.out = nn.Linear(d, ff, bias=False), nn.Linear(ff, d, bias=False)
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x + attn(ln(x)), then + mlp(ln(.))."""
        B, L, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, L, D)
        x = x + self.proj(a)
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class NanoGPT(nn.Module):
    """Token + position embeddings, ``layers`` blocks, final LayerNorm, tied head."""

    def __init__(self, vocab: int, length: int, d: int, heads: int, ff: int, layers: int):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(length, d)
        self.blocks = nn.ModuleList(Block(d, heads, ff) for _ in range(layers))
        self.ln = nn.LayerNorm(d)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits (B, L, vocab)."""
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for b in self.blocks:
            x = b(x)
        return F.linear(self.ln(x), self.wte.weight)


def batch(preset: str, batch_size: int, device: str):
    """(x, y, mask, real tokens) with the preset's data shape; rows end at varied lengths for depth presets."""
    kind = next((k for k in ("addition", "depth") if k in preset), "khop")
    length, vocab = SHAPES[kind]
    g = torch.Generator().manual_seed(0)
    x = torch.randint(4, vocab, (batch_size, length), generator=g)
    y = torch.randint(4, vocab, (batch_size, length), generator=g)
    ends = torch.randint(2, length + 1, (batch_size,), generator=g) if kind == "depth" else \
        torch.full((batch_size,), length)
    mask = torch.zeros_like(x, dtype=torch.bool)
    mask[torch.arange(batch_size), ends - 1] = True
    return x.to(device), y.to(device), mask.to(device), int(ends.sum()), vocab, length


def timed(step, steps: int, warmup: int, repeats: int, device: str) -> list[float]:
    """Seconds per step of ``step`` (after ``warmup`` steps), one figure per repeat."""
    for _ in range(warmup):
        step()
    out = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        out.append((time.perf_counter() - t0) / steps)
    return out


def bench(preset: str, device: str, args) -> tuple[list[float], list[float], int, int]:
    """Seconds per step of the reference model and of the nanoGPT loop, real tokens per step, and T."""
    from benchgen.reference_models.config import resolve
    from benchgen.reference_models.model import LoopedTransformer
    from benchgen.reference_models.train import LossModel, param_groups

    mc, tc = resolve(preset)
    x, y, mask, real, vocab, length = batch(preset, tc.batch_size, device)
    mc.vocab_size, mc.max_len = vocab, length
    T = args.loops or mc.loops
    torch.manual_seed(0)
    model = LoopedTransformer(mc).to(device)
    lossm = LossModel(model, tc)
    opt = torch.optim.AdamW(param_groups(model, tc.weight_decay), lr=tc.lr)

    def ours():
        """One optimizer step of the reference model (its training loss, answer positions scored)."""
        loss = lossm(x, y, mask, T, 1, 1.0 / tc.batch_size)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    torch.manual_seed(0)
    gpt = NanoGPT(vocab, length, mc.d_model, mc.n_heads, mc.ff, T * (mc.n_prelude + mc.n_block + mc.n_coda)).to(device)
    gopt = torch.optim.AdamW(gpt.parameters(), lr=tc.lr)
    target = torch.where(mask, y, torch.full_like(y, -1))

    def nano():
        """One optimizer step of the nanoGPT-style loop (cross-entropy on the same answer positions)."""
        loss = F.cross_entropy(gpt(x).view(-1, vocab), target.view(-1), ignore_index=-1)
        gopt.zero_grad(set_to_none=True)
        loss.backward()
        gopt.step()

    a, b = [], []
    for _ in range(args.repeats):  # interleaved, so a change in the machine's load hits both alike
        a += timed(ours, args.steps, args.warmup, 1, device)
        b += timed(nano, args.steps, args.warmup, 1, device)
    return a, b, real, T


def main() -> None:
    """Print the throughput table with the >= 1x target per preset and device."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", default="cpu-depth-looped")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3, help="timings per model (best reported, with the spread)")
    ap.add_argument("--loops", type=int, default=None, help="T (default: the preset's model.loops)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (the presets use 1)")
    ap.add_argument("--no-cuda", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and not args.no_cuda else [])
    print(f"torch {torch.__version__}, {args.threads} thread(s), load average {os.getloadavg()}; "
          f"best of {args.repeats} x {args.steps} steps (spread = max - min); tokens = real (unpadded) tokens")
    print("| preset | device | T | reference tokens/s | nanoGPT-style tokens/s | ratio | target |")
    print("|---|---|---:|---:|---:|---:|---|")
    for preset in args.presets.split(","):
        for dev in devices:
            a, b, real, T = bench(preset, dev, args)
            ra, rb = real / min(a), real / min(b)
            sa, sb = (real / min(t) - real / max(t) for t in (a, b))
            ok = ra >= rb
            print(f"| {preset} | {dev} | {T} | {ra:,.0f} (±{sa:,.0f}) | {rb:,.0f} (±{sb:,.0f}) | {ra / rb:.2f}x | "
                  f">= 1x {'MET' if ok else 'MISSED'} |", flush=True)
    print(f"load average at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
