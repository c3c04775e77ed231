"""Benchmark the fused junction kernel (``reference_models.kernels.junction``).

On CUDA: forward and forward+backward time plus achieved GB/s of the fused Triton op vs the eager
PyTorch reference vs ``torch.compile`` of the reference, bf16, rows 4K-1M x hidden 256-4096 (a, b, s
per-channel, every input requiring grad). Prints a markdown table and speed-up ratios. ``--model``
additionally times whole training steps of the reference model with each junction path.

Without a GPU: runs a small correctness check of the Triton path through ``TRITON_INTERPRET=1`` and
says that timings are skipped.

Targets (H100 SXM, bf16, fwd+bwd):
  * fused >= 2.5x eager PyTorch reference,
  * fused >= 1.1x ``torch.compile`` of the reference,
  * fused >= 70% of peak HBM bandwidth at the largest sizes (ideal traffic: fwd reads h, z and
    writes h', y; bwd reads h, z, dh', dy and writes dh, dz -> 10 * rows * H * 2 bytes).

Usage: ``python benchmarks/kernel.py [--max-elems N] [--peak-gbps X] [--model]``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

import torch

if not torch.cuda.is_available():  # must be set before the kernels are decorated (module import)
    os.environ.setdefault("TRITON_INTERPRET", "1")

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchgen.reference_models.kernels.junction import (  # noqa: E402 - after the interpreter switch
    HAS_TRITON,
    junction_reference,
    junction_triton,
)

ROWS = (4096, 65536, 262144, 1048576)
HIDDEN = (256, 1024, 4096)
#: Peak HBM bandwidth in GB/s by device-name substring (vendor datasheets).
PEAK_GBPS = {"H200": 4800.0, "H100 SXM": 3350.0, "H100 PCIe": 2000.0, "H100": 3350.0, "A100": 2039.0}

Junction = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def _inputs(rows: int, hidden: int, dtype: torch.dtype, device: str) -> tuple[list[torch.Tensor], ...]:
    """Leaf inputs (h, z, a, b, s) with requires_grad, and upstream gradients (dh', dy)."""
    gen = torch.Generator(device=device).manual_seed(0)

    def rnd(*shape: int, scale: float = 1.0, offset: float = 0.0) -> torch.Tensor:
        t = offset + scale * torch.randn(*shape, generator=gen, device=device, dtype=torch.float32)
        return t.to(dtype).requires_grad_()

    leaves = [rnd(rows, hidden), rnd(rows, hidden), rnd(hidden, scale=0.1, offset=0.9), rnd(hidden)]
    leaves.append(rnd(hidden, scale=0.1))
    grads = [torch.randn(rows, hidden, generator=gen, device=device).to(dtype) for _ in range(2)]
    return leaves, grads


def _fwd_bwd(fn: Junction, leaves: list[torch.Tensor], grads: list[torch.Tensor]) -> Callable[[], None]:
    def step() -> None:
        outs = fn(*leaves)
        torch.autograd.backward(outs, grads)

    return step


def _fwd(fn: Junction, leaves: list[torch.Tensor]) -> Callable[[], None]:
    def step() -> None:
        with torch.no_grad():
            fn(*leaves)

    return step


def _peak_gbps(override: float | None) -> float | None:
    if override:
        return override
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_GBPS.items() if k in name), None)


def bench_gpu(max_elems: int, peak_override: float | None) -> None:
    """Markdown table of fwd / fwd+bwd ms and fwd+bwd GB/s for fused vs eager vs torch.compile."""
    from triton.testing import do_bench

    dtype = torch.bfloat16
    peak = _peak_gbps(peak_override)
    print(f"device: {torch.cuda.get_device_name()}  peak HBM: {peak or 'unknown'} GB/s  dtype: bf16\n")
    print(
        "| rows | H | fused fwd ms | fused f+b ms | eager f+b ms | compile f+b ms "
        "| fused GB/s | % peak | x eager | x compile |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for hidden in HIDDEN:
        for rows in ROWS:
            if rows * hidden > max_elems:
                continue
            leaves, grads = _inputs(rows, hidden, dtype, "cuda")
            torch._dynamo.reset()  # fresh static-shape compile per size (no recompile-limit surprises)
            compiled = torch.compile(junction_reference, dynamic=False)
            paths = {"fused": junction_triton, "eager": junction_reference, "compile": compiled}
            ms: dict[str, float] = {}
            for name, fn in paths.items():
                step = _fwd_bwd(fn, leaves, grads)
                step()  # compile / autotune outside the timed region
                torch.cuda.synchronize()
                ms[name] = do_bench(step, grad_to_none=leaves)
            fwd_ms = do_bench(_fwd(junction_triton, leaves))
            nbytes = 10 * rows * hidden * leaves[0].element_size()
            gbps = nbytes / (ms["fused"] * 1e-3) / 1e9
            pct = f"{100 * gbps / peak:.0f}%" if peak else "n/a"
            print(
                f"| {rows} | {hidden} | {fwd_ms:.3f} | {ms['fused']:.3f} | {ms['eager']:.3f} "
                f"| {ms['compile']:.3f} | {gbps:.0f} | {pct} | {ms['eager'] / ms['fused']:.2f} "
                f"| {ms['compile'] / ms['fused']:.2f} |"
            )
            del leaves, grads
            torch.cuda.empty_cache()
    print("\ntargets: x eager >= 2.5, x compile >= 1.1, >= 70% of peak at the largest sizes")


def bench_model(d_model: int = 1024, loops: int = 4, batch: int = 16, seq: int = 256) -> None:
    """Whole training-step throughput (fwd + bwd + AdamW, bf16 autocast) of a reference looped
    transformer (Parcae injection + LoopFormer conditioning: every junction carries a, b and s)
    with the Triton junction vs the PyTorch reference junction. Target: >= 1.2x."""
    import dataclasses

    from triton.testing import do_bench

    from benchgen.reference_models.config import ModelConfig
    from benchgen.reference_models.model import LoopedTransformer

    base = ModelConfig(vocab_size=512, max_len=seq, d_model=d_model, n_heads=max(1, d_model // 64), n_prelude=1,
                       n_block=2, n_coda=1, loops=loops, injection="parcae", conditioning="loopformer",
                       positions="rotary", kernel="torch")
    idx = torch.randint(0, 512, (batch, seq), device="cuda")
    print(f"\n| junction path | step ms | tokens/s |  (d={d_model}, T={loops}, batch {batch}x{seq})\n|---|---:|---:|")
    times = {}
    for path in ("torch", "triton"):
        torch.manual_seed(0)
        model = LoopedTransformer(dataclasses.replace(base, kernel=path)).cuda()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)

        def step(model=model, opt=opt):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logits = model(idx)
                loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), idx.flatten())
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        times[path] = do_bench(step, warmup=5, rep=50)
        print(f"| {path} | {times[path]:.2f} | {batch * seq / (times[path] * 1e-3):,.0f} |")
    print(f"training step speed-up (triton / torch reference): {times['torch'] / times['triton']:.2f}x (target >= 1.2x)")


def check_correctness(device: str) -> int:
    """Triton path vs reference (values and all five gradients) at ragged shapes on ``device``.

    fp32 must agree to 1e-4 (relative to the largest value); bf16/fp16 to 2e-2. On CPU this runs
    through the interpreter; on CUDA it is the compiled kernels' correctness check.
    """
    shapes = [(7, 40, torch.float32), (33, 130, torch.bfloat16), (5, 256, torch.float16)]
    if device == "cuda":
        shapes += [(4099, 1000, torch.float32), (4099, 1000, torch.bfloat16), (1025, 4096, torch.float16),
                   (3, 8192, torch.bfloat16)]
    bad = []
    for rows, hidden, dtype in shapes:
        leaves, grads = _inputs(rows, hidden, dtype, device)
        results = []
        for fn in (junction_triton, junction_reference):
            outs = fn(*leaves)
            results.append([*outs, *torch.autograd.grad(outs, leaves, grads)])
        errs = [((x.float() - y.float()).abs().max() / y.float().abs().max().clamp_min(1)).item()
                for x, y in zip(*results)]  # fmt: skip
        tol = 1e-4 if dtype == torch.float32 else 2e-2
        if max(errs) > tol:
            bad.append((rows, hidden, dtype, max(errs)))
        print(f"{device} rows={rows} H={hidden} {dtype}: max rel err (h', y, dh, dz, da, db, ds) = "
              + ", ".join(f"{e:.1e}" for e in errs))  # fmt: skip
    print("correctness check", "passed" if not bad else f"FAILED: {bad}")
    return 0 if not bad else 1


def check_cpu() -> int:
    """No GPU: the interpreter correctness check only."""
    print("no CUDA GPU present: timings skipped; running an interpreter correctness check instead")
    if not HAS_TRITON:
        print("triton is not installed; nothing to check (pip install 'benchgen[kernels]')")
        return 0
    return check_correctness("cpu")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-elems", type=int, default=1 << 28, help="skip sizes with rows*H above this")
    parser.add_argument("--peak-gbps", type=float, default=None, help="override peak HBM bandwidth")
    parser.add_argument("--model", action="store_true", help="also time whole reference-model steps")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        return check_cpu()
    if not HAS_TRITON:
        print("triton is not installed; install with pip install 'benchgen[kernels]'")
        return 1
    print(f"torch {torch.__version__}, triton {__import__('triton').__version__}, {torch.cuda.get_device_name()}")
    if check_correctness("cuda"):
        return 1
    bench_gpu(args.max_elems, args.peak_gbps)
    if args.model:
        bench_model()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
