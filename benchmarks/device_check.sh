#!/usr/bin/env bash
# The one prepared GPU check (about 5 minutes on an H100): CUDA correctness of the fused junction
# kernel against the PyTorch reference, then the kernel and whole-training-step benchmarks.
# Run from the repo root on a CUDA machine; output goes to stdout and, when $OUT is set, to files.
set -uo pipefail
out=${OUT:-/tmp/benchgen-device}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python benchmarks/kernel.py --model 2>&1 | tee "$out/kernel_bench.md"
# the model-level equivalence test, on CUDA tensors through the compiled kernels
TRITON_INTERPRET=0 python - <<'PY' 2>&1 | tee "$out/model_equivalence.txt"
import dataclasses, torch
from reference_models.config import ModelConfig
from reference_models.model import LoopedTransformer
torch.manual_seed(0)
cfg = ModelConfig(vocab_size=64, max_len=32, d_model=256, n_heads=4, n_prelude=1, n_block=2, loops=3,
                  injection="parcae", conditioning="loopformer", positions="rotary", kernel="torch")
ref = LoopedTransformer(cfg).cuda()
tri = LoopedTransformer(dataclasses.replace(cfg, kernel="triton")).cuda()
tri.load_state_dict(ref.state_dict())
idx = torch.randint(0, 64, (8, 32), device="cuda")
for m in (ref, tri):
    torch.nn.functional.cross_entropy(m(idx).flatten(0, 1), idx.flatten()).backward()
worst = max(((p.grad - q.grad).abs().max() / q.grad.abs().max().clamp_min(1e-6)).item()
            for p, q in zip(tri.parameters(), ref.parameters()) if q.grad is not None)
print(f"whole-model fp32 gradient max rel diff, triton vs torch junction: {worst:.2e}", "OK" if worst < 1e-3 else "FAILED")
PY
