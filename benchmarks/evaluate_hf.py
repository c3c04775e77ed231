"""Benchmark: examples/s of the ``hf:`` adapter on a tiny GPT-2, CPU.

Generates a small khop dataset, saves a randomly initialised 2-layer GPT-2 (n_embd 64) with a
word-level tokenizer over the dataset vocabulary, and times ``run_model`` (batched greedy
decoding + output validation) at several batch sizes. Prints examples/s (best of 2 passes after
a warm-up pass) and the speed-up of each batch size over batch size 1 (the unbatched baseline,
timed on the first --unbatched-limit examples). Weights are random: throughput does not depend
on them.

    python benchmarks/evaluate_hf.py [--examples 512] [--batch-sizes 1,32,128] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build(root: Path, examples: int):
    import torch
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from benchgen.config import build_config
    from benchgen.dataset import load
    from benchgen.pipeline.generate import generate
    from benchgen.tasks.khop import TASK as KHOP

    per_hop = max(examples // 2, 8)
    cfg = build_config(KHOP.config, KHOP.presets, None, {
        "structure": "permutation", "num_entities": 64, "num_relations": 8, "out_degree": 8,
        "ood_fraction": 0.0, "train_hops": "2", "test_hops": "3,4", "train_per_hop": 200,
        "valid_per_hop": 8, "test_per_hop": per_hop, "systematic_per_hop": 0, "seed": 0})
    ds = load(generate(KHOP, cfg, root / "khop"))
    tk = Tokenizer(models.WordLevel({t: i for i, t in enumerate(ds.vocab.tokens)}, unk_token="<pad>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("<[^>]*>"), behavior="isolated")
    tk.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(ds.vocab), n_positions=32, n_embd=64, n_layer=2,
                                       n_head=4, bos_token_id=1, eos_token_id=2, pad_token_id=0))
    model.save_pretrained(root / "hf")
    tok.save_pretrained(root / "hf")
    return ds


def timed(ds, spec: str, batch: int, device: str, splits: list[str], limit: int | None,
          repeats: int = 2) -> tuple[float, int]:
    """Best of ``repeats`` timed passes after one untimed warm-up pass (every prompt shape seen)."""
    from benchgen.evaluators.models.run import build_adapter, run_model

    adapter = build_adapter(spec, ds, device=device)
    run_model(ds, adapter, splits=splits, batch_size=batch, limit=limit, progress=False)  # warm-up
    best, n = float("inf"), 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        preds = run_model(ds, adapter, splits=splits, batch_size=batch, limit=limit, progress=False)
        best, n = min(best, time.perf_counter() - t0), preds.num_rows
    return best, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=512, help="test_depth examples (2 depths)")
    ap.add_argument("--batch-sizes", default="1,32,128")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--unbatched-limit", type=int, default=64, help="examples per depth split timed at batch 1")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    batches = [int(b) for b in args.batch_sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        ds = build(Path(tmp), args.examples)
        splits = ["test_depth"]
        print(f"hf: tiny GPT-2 (2 layers, d=64), {ds.manifest['splits']['test_depth']['rows']} examples, "
              f"device={args.device}, torch threads={torch.get_num_threads()}")
        base = None
        for b in batches:
            limit = args.unbatched_limit if b == 1 else None  # batch 1 is slow: time fewer examples
            secs, n = timed(ds, f"hf:{Path(tmp) / 'hf'}", b, args.device, splits, limit)
            rate = n / secs
            base = base or rate
            print(f"  hf:          batch {b:>4}: {rate:9.1f} examples/s  ({n} examples in {secs:.2f} s, "
                  f"x{rate / base:.1f} vs batch {batches[0]})")


if __name__ == "__main__":
    main()
