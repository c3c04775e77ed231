"""Benchmark: examples/s of ``benchgen evaluate --model hf:`` against ``lm_eval --model hf``, CPU.

Generates a khop dataset, saves a randomly initialised 2-layer GPT-2 (n_embd 64) with a word-level
tokenizer over the dataset vocabulary, exports the test_depth split as lm-eval tasks, then times
both whole processes on the same checkpoint, tasks and batch size (best of --repeats, with the
spread), and prints the ratio (benchgen / lm-eval, target >= 1x). Per-row correctness must be
identical: lm-eval's logged samples are scored by ``benchgen evaluate --lm-eval-samples`` and
compared id by id with the ``--model hf:`` predictions: the same correctness, and the same greedy
decode (lm-eval's continuation starts with benchgen's, whose token budget is the answer's + 1).
Weights are random: speed does not depend on them.

    python benchmarks/evaluate_hf.py [--examples 2000] [--batch-size 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build(root: Path, examples: int):
    """The dataset (test_depth: ``examples`` rows over depths 3, 4) and the random checkpoint in root/hf."""
    import torch
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from benchgen.config import build_config
    from benchgen.dataset import load
    from benchgen.pipeline.generate import generate
    from benchgen.tasks.khop import TASK as KHOP

    cfg = build_config(KHOP.config, KHOP.presets, None, {
        "structure": "permutation", "num_entities": 64, "num_relations": 8, "out_degree": 8,
        "ood_fraction": 0.0, "train_hops": "2", "test_hops": "3,4", "train_per_hop": 200,
        "valid_per_hop": 8, "test_per_hop": max(examples // 2, 8), "systematic_per_hop": 0, "seed": 0})
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


def timed(cmd: list[str], env: dict, repeats: int, fresh: Path) -> list[float]:
    """Wall seconds of ``repeats`` runs of a whole process (each must succeed), ``fresh`` removed before each."""
    import shutil

    out = []
    for _ in range(repeats):
        shutil.rmtree(fresh, ignore_errors=True)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        out.append(time.perf_counter() - t0)
        if proc.returncode:
            sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return out


def answers_of(run_dir: Path) -> dict[str, str]:
    """id -> predicted answer (stripped) of an evaluation directory."""
    import pyarrow.parquet as pq

    return {r["id"]: r["prediction"].strip() for r in pq.read_table(run_dir / "predictions.parquet").to_pylist()}


def main() -> None:
    """Build, time both whole processes, check per-row agreement, print the ratio."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=2000, help="test_depth examples (2 depths)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads in both processes (OMP_NUM_THREADS)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ds = build(tmp, args.examples)
        from benchgen.evaluators.lm_eval import export_lm_eval

        export_lm_eval(ds, tmp / "tasks", splits=["test_depth"])
        n = ds.manifest["splits"]["test_depth"]["rows"]
        env = {**os.environ, "HF_DATASETS_CACHE": str(tmp / "hf-cache"), "HF_HUB_OFFLINE": "1",
               "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
               "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT)}
        bench = [sys.executable, "-m", "benchgen", "evaluate", str(ds.path), "--model", f"hf:{tmp / 'hf'}",
                 "--splits", "test_depth", "--batch-size", str(args.batch_size), "--no-plots", "--no-progress",
                 "--overwrite", "--out", str(tmp / "ev-hf")]
        lm = [sys.executable, "-m", "lm_eval", "run", "--model", "hf", "--model_args",
              f"pretrained={tmp / 'hf'},dtype=float32", "--device", "cpu", "--batch_size", str(args.batch_size),
              "--include_path", str(tmp / "tasks"), "--tasks", "benchgen_khop_test_depth", "--log_samples",
              "--output_path", str(tmp / "lm-out")]
        t_bench = timed(bench, env, args.repeats, tmp / "ev-hf")
        t_lm = timed(lm, env, args.repeats, tmp / "lm-out")
        subprocess.run([sys.executable, "-m", "benchgen", "evaluate", str(ds.path), "--lm-eval-samples",
                        str(tmp / "lm-out"), "--no-plots", "--out", str(tmp / "ev-lm")], env=env, check=True,
                       capture_output=True)
        answers = {r["id"]: r["answer"] for r in ds.table("test_depth").to_pylist()}
        ours, theirs = answers_of(tmp / "ev-hf"), answers_of(tmp / "ev-lm")
        same = {i: ours[i] == answers[i] for i in ours} == {i: theirs.get(i) == answers[i] for i in answers}
        same_decode = all(theirs.get(i, "").startswith(ours[i]) for i in ours)
        rate_b, rate_l = n / min(t_bench), n / min(t_lm)
        print(json.dumps({"examples": n, "batch_size": args.batch_size, "threads": args.threads,
                          "benchgen_hf_s": [round(t, 2) for t in t_bench], "lm_eval_hf_s": [round(t, 2) for t in t_lm],
                          "identical_per_row_correctness": same, "same_greedy_decode": same_decode, "correct": sum(ours[i] == answers[i] for i in ours)}))
        print(f"benchgen --model hf: {rate_b:8.1f} examples/s (best of {args.repeats}: {min(t_bench):.2f} s, "
              f"spread {max(t_bench) - min(t_bench):.2f} s)")
        print(f"lm_eval  --model hf: {rate_l:8.1f} examples/s (best of {args.repeats}: {min(t_lm):.2f} s, "
              f"spread {max(t_lm) - min(t_lm):.2f} s)")
        print(f"ratio benchgen / lm-eval: {rate_b / rate_l:.2f}x; per-row correctness identical: {same}; "
              f"same greedy decode: {same_decode}")
        if not (same and same_decode):
            sys.exit(1)


if __name__ == "__main__":
    main()
