"""Training throughput (tokens/s) of the small presets on CPU, and on CUDA when present.

    python benchmarks/train.py                 # CPU (1 thread, like the presets) + CUDA if available
    python benchmarks/train.py --steps 50 --presets cpu-khop-looped --threads 2

Synthetic batches with the shapes of the CPU reproduction datasets (khop: 6 positions, 58 tokens;
addition-small: 16 positions, 16 tokens); the full optimizer step is timed (forward, backward,
AdamW), after warm-up steps. Tokens = batch x sequence positions.
"""

from __future__ import annotations

import argparse
import time

import torch

SHAPES = {"khop": (6, 58), "addition": (16, 16), "depth": (7, 40)}  # (sequence length, vocab size)


def bench(preset: str, device: str, steps: int, warmup: int, loops: int | None = None) -> float:
    from benchgen.reference_models.config import resolve
    from benchgen.reference_models.model import LoopedTransformer
    from benchgen.reference_models.train import LossModel, param_groups

    mc, tc = resolve(preset)
    length, vocab = SHAPES[next((k for k in ("addition", "depth") if k in preset), "khop")]
    mc.vocab_size, mc.max_len = vocab, length
    torch.manual_seed(0)
    model = LoopedTransformer(mc).to(device)
    lossm = LossModel(model, tc)
    opt = torch.optim.AdamW(param_groups(model, tc.weight_decay), lr=tc.lr)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(4, vocab, (tc.batch_size, length), generator=g).to(device)
    y = torch.randint(4, vocab, (tc.batch_size, length), generator=g).to(device)
    mask = torch.zeros_like(x, dtype=torch.bool)
    mask[:, -1] = True
    T = loops or mc.loops

    def step():
        loss = lossm(x, y, mask, T, 1, 1.0 / tc.batch_size)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return steps * x.numel() / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", default="cpu-khop-looped,cpu-khop-vanilla,cpu-addition-looped,cpu-addition-vanilla,"
                                         "cpu-depth-looped,cpu-depth-vanilla,cpu-depth-isoflop")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (the presets use 1)")
    ap.add_argument("--no-cuda", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and not args.no_cuda else [])
    print(f"{'preset':<24} {'device':<6} {'T':>3} {'tokens/s':>12}")
    for preset in args.presets.split(","):
        for dev in devices:
            from benchgen.reference_models.config import resolve

            T = resolve(preset)[0].loops
            tps = bench(preset, dev, args.steps, args.warmup)
            print(f"{preset:<24} {dev:<6} {T:>3} {tps:>12,.0f}", flush=True)


if __name__ == "__main__":
    main()
