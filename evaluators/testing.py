"""Tiny hand-made datasets for tests and examples (no task generator needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from benchgen.dataset import DatasetWriter
from benchgen.schema import example_schema, make_ids
from benchgen.vocab import Vocab, list_array_from_matrix

N_TOKENS = 10


def toy_vocab() -> Vocab:
    return Vocab(["<pad>", "<bos>", "<eos>", "<sep>"] + [f"<e_{i}>" for i in range(N_TOKENS)])


def toy_dataset(out: str | Path, depths: dict[str, list[int]], targets: dict[str, list[list[int]]] | None = None,
                task: str = "toy", overwrite: bool = False) -> Path:
    """Write a dataset with the given depths per split.

    Row i of a split has target tokens ``targets[split][i]`` (entity numbers 0..9), by default
    ``[i % 10]``; its answer is their rendering, e.g. ``"<e_3>"`` or ``"<e_1><e_2>"``.
    """
    vocab = toy_vocab()
    with DatasetWriter(out, task=task, config={"toy": True}, seed=0, vocab=vocab, schema=example_schema(),
                       overwrite=overwrite) as w:
        for split, ds in depths.items():
            n = len(ds)
            rows = (targets or {}).get(split) or [[i % N_TOKENS] for i in range(n)]
            lengths = np.array([len(r) for r in rows])
            width = int(lengths.max())
            m = np.zeros((n, width), np.int32)
            for i, r in enumerate(rows):
                m[i, : len(r)] = np.asarray(r) + 4
            tgt = list_array_from_matrix(m, lengths)
            w.write_split(split, [pa.table({
                "id": make_ids(task, split, 0, n),
                "split": pa.array([split] * n, pa.string()),
                "depth": pa.array(ds, pa.int32()),
                "input_ids": list_array_from_matrix(np.zeros((n, 1), np.int32)),
                "target_ids": tgt,
                "prompt": pa.array([f"q{i}" for i in range(n)], pa.string()),
                "answer": vocab.render(tgt),
            }, schema=example_schema())])
    return Path(out)


def metric_cells(rows: list[tuple[str, int, int | None, int, int]]):
    """Cells as scoring produces them from ``(split, depth, loops, n, correct)`` tuples (metric tests)."""
    from benchgen.evaluators.results import cells_from_records

    from benchgen.stats import wilson

    recs = []
    for split, depth, loops, n, c in rows:
        lo, hi = wilson(np.array([c]), np.array([n]))
        recs.append({"split": split, "depth": depth, "loops": loops, "n": n, "correct": c,
                     "accuracy": c / n, "ci_low": float(lo[0]), "ci_high": float(hi[0])})
    return cells_from_records(recs)


def tiny_gpt2(dataset, path: str | Path, *, n_positions: int, steps: int) -> Path:
    """Save a 1-layer GPT-2 with a word-level tokenizer over ``dataset``'s vocab, trained ``steps``
    full-batch steps on its train split (answer + eos), for the hf adapter and lm-eval tests."""
    import torch
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tokens = dataset.vocab.tokens
    tk = Tokenizer(models.WordLevel({t: i for i, t in enumerate(tokens)}, unk_token="<pad>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("<[^>]*>"), behavior="isolated")
    tk.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>")
    cfg = GPT2Config(vocab_size=len(tokens), n_positions=n_positions, n_embd=32, n_layer=1, n_head=2,
                     bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(cfg)
    seqs = [r["input_ids"] + r["target_ids"] + [2] for r in dataset.table("train").to_pylist()]
    width = max(map(len, seqs))
    x = torch.zeros(len(seqs), width, dtype=torch.long)
    labels = torch.full((len(seqs), width), -100)
    for i, s in enumerate(seqs):
        x[i, : len(s)] = torch.tensor(s)
        labels[i, len(s) - 2: len(s)] = torch.tensor(s[-2:])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-2)
    for _ in range(steps):
        loss = model(input_ids=x, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    path = Path(path)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def shard_rows(monkeypatch, rows: int) -> None:
    """Make every DatasetWriter cut shards of ``rows`` rows (tests of multi-shard paths on tiny data)."""
    orig = DatasetWriter.__init__

    def init(self, *a, **k):
        k["rows_per_shard"] = rows
        orig(self, *a, **k)

    monkeypatch.setattr(DatasetWriter, "__init__", init)


def dataset_files(d: str | Path) -> dict[str, bytes]:
    """Every file under a dataset directory, by relative path (byte-identity checks)."""
    d = Path(d)
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}
