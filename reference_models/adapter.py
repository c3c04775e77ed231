"""Evaluator adapter for reference-model runs: ``--model reference:RUN_DIR``.

:class:`ReferenceAdapter` implements the evaluators' model protocol
(:class:`benchgen.evaluators.models.protocol.ModelAdapter`) by name, like every other adapter.

Loops sweep in one pass: the first answer token of every example is read out after *every*
iteration of a single forward pass of T_max = max(loops) iterations (norm -> head on the loop
state at each t), which also gives, per iteration, the target-vs-best-other logit ``margin``, the
``entropy`` of the answer distribution and ``kl_prev`` = KL(p_t || p_{t-1}) (null at t = 1).

Multi-token answers (e.g. addition): greedy decoding must feed each T's own earlier tokens back,
so after that shared first pass every requested T decodes its remaining tokens separately
(one forward of T loops per further token, no KV cache): cost ~ sum(loops) x (answer length - 1)
loop-iterations per batch. Single-token answers (khop) cost one pass of T_max loops.
LoopFormer models condition on the step size 1/T, so a T-step route is not a prefix of the
T_max route: each T runs its own pass there.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from benchgen.errors import BenchgenError
from benchgen.evaluators.models.protocol import ModelAdapter
from benchgen.reference_models import checkpoint as ckpt
from benchgen.reference_models.data import AnswerFormat, _lengths
from benchgen.vocab import list_array_from_matrix


def _first_token_stats(logits: torch.Tensor, target: torch.Tensor | None):
    """Per iteration (T, B): argmax, margin (needs target), entropy, KL to the previous iteration."""
    logits = logits.double()
    logp = torch.log_softmax(logits, -1)
    p = logp.exp()
    entropy = -(p * logp).sum(-1)
    kl = torch.full_like(entropy, float("nan"))
    kl[1:] = (p[1:] * (logp[1:] - logp[:-1])).sum(-1)
    margin = None
    if target is not None:
        tgt = logits.gather(-1, target[None, :, None].expand(logits.shape[0], -1, 1)).squeeze(-1)
        other = logits.scatter(-1, target[None, :, None].expand(logits.shape[0], -1, 1), float("-inf"))
        margin = tgt - other.max(-1).values
    return logits.argmax(-1), margin, entropy, kl


def run_metadata(config: dict) -> dict:
    """What results.json needs about training: the trained T, fixed or sampled T, curriculum depth."""
    train, model = config.get("train", {}), config.get("model", {})
    sampling = train.get("loops_sampling", "fixed")
    meta = {"trained_loops": config.get("trained_loops", model.get("loops")),
            "loop_sampling": config.get("loop_sampling", "fixed" if sampling == "fixed" else "sampled"),
            "loops_sampler": sampling, "train_steps": config.get("step")}
    if config.get("curriculum"):
        meta["curriculum_max_hop"] = config["curriculum"]["max_hop"]
    return meta


class ReferenceAdapter(ModelAdapter):
    """A trained LoopedTransformer run directory answering benchgen examples."""

    supports_loops = True
    takes_targets = True  # run_model passes targets= separately; the model only sees input_ids

    def __init__(self, run: str | Path, device: str = "cpu", batch_size: int = 256):
        self.run = Path(run)
        self.device = torch.device(device)
        self.model, self.config = ckpt.load_model(self.run, self.device)
        self.vocab = ckpt.load_vocab(self.run)
        self.fmt = AnswerFormat.from_dict(self.config["answer"])
        self.batch_size = int(batch_size)
        self.name = f"reference:{self.run.resolve().name}"
        self.metadata = run_metadata(self.config)

    @torch.no_grad()
    def _predict_batch(self, n_in: np.ndarray, in_vals: np.ndarray, target: torch.Tensor | None,
                       Ts: list[int]):
        model, fmt, pad = self.model, self.fmt, self.vocab.pad_id
        B = len(n_in)
        width = int(n_in.max()) + fmt.max_answer
        buf = np.full((B, width), pad, dtype=np.int64)
        buf[np.arange(width)[None, :] < n_in[:, None]] = in_vals
        buf_t = torch.from_numpy(buf).to(self.device)
        last = torch.from_numpy(n_in - 1).to(self.device)
        x = buf_t[:, :int(n_in.max())]
        if model.cfg.conditioning == "loopformer":
            per_t = torch.stack([model(x, loops=T, at=last) for T in range(1, max(Ts) + 1)])
        else:
            per_t = model(x, loops=max(Ts), readout="all", at=last)
        first, margin, entropy, kl = _first_token_stats(per_t, target)
        preds = []
        for T in Ts:
            out = torch.full((B, fmt.max_answer), pad, dtype=torch.long, device=self.device)
            out[:, 0] = first[T - 1]
            seq = buf_t.clone()
            rows = torch.arange(B, device=self.device)
            seq[rows, last + 1] = out[:, 0]
            for j in range(1, fmt.max_answer):  # greedy decoding of the remaining answer tokens
                if fmt.eos_id is not None and bool((out[:, :j] == fmt.eos_id).any(1).all()):
                    break
                nxt = model(seq[:, :int(n_in.max()) + j], loops=T, at=last + j).argmax(-1)
                out[:, j] = nxt
                seq[rows, last + 1 + j] = nxt
            preds.append(out.cpu().numpy())
        pick = np.asarray(Ts) - 1
        stats = [None if t is None else t[pick].cpu().numpy() for t in (margin, entropy, kl)]
        return np.stack(preds), stats  # (len(Ts), B, max_answer)

    def predict(self, examples: pa.Table, loops: Sequence[int] | None, *, targets: pa.Table | None = None) -> pa.Table:
        """One row per (example, loop count), example-major; loops null when ``loops`` is None.

        ``targets`` (``target_ids``) is read only to compute margins, never fed to the model;
        without it, a ``target_ids`` column of ``examples`` is used (direct library calls).
        """
        for col in ("id", "input_ids"):
            if col not in examples.column_names:
                raise BenchgenError(f"reference adapter: examples table lacks column '{col}'")
        Ts = sorted({int(t) for t in loops}) if loops else [self.model.cfg.loops]
        if Ts[0] < 1:
            raise BenchgenError(f"--loops: loop counts must be >= 1, got {Ts[0]}")
        n_all, vals_all = _lengths(examples.column("input_ids"))
        if len(n_all) and n_all.min() < 1:
            raise BenchgenError("reference adapter: an example has empty input_ids")
        tsrc = targets if targets is not None else examples
        has_tgt = "target_ids" in tsrc.column_names
        if has_tgt:
            n_tg, tg_vals = _lengths(tsrc.column("target_ids"))
            first_tgt = tg_vals[np.concatenate([[0], np.cumsum(n_tg)[:-1]])] if len(n_tg) else tg_vals[:0]
            if len(n_tg) and n_tg.min() < 1:
                has_tgt = False
        starts = np.concatenate([[0], np.cumsum(n_all)])
        pred_parts, stat_parts = [], []
        for s in range(0, len(n_all), self.batch_size):
            e = min(s + self.batch_size, len(n_all))
            tgt = torch.from_numpy(first_tgt[s:e]).to(self.device) if has_tgt else None
            p, st = self._predict_batch(n_all[s:e], vals_all[starts[s]:starts[e]], tgt, Ts)
            pred_parts.append(p)
            stat_parts.append(st)
        n, k = len(n_all), len(Ts)
        if n == 0:
            preds = np.zeros((k, 0, self.fmt.max_answer), np.int64)
            stats = [np.zeros((k, 0)) for _ in range(3)]
        else:
            preds = np.concatenate(pred_parts, axis=1)
            stats = [None if stat_parts[0][i] is None else np.concatenate([st[i] for st in stat_parts], axis=1)
                     for i in range(3)]
        flat = preds.transpose(1, 0, 2).reshape(n * k, -1)  # example-major rows
        if self.fmt.eos_id is not None:
            is_eos = flat == self.fmt.eos_id
            lengths = np.where(is_eos.any(1), is_eos.argmax(1), flat.shape[1])
        else:
            lengths = np.full(len(flat), self.fmt.fixed_len)
        text = self.vocab.render(list_array_from_matrix(flat, lengths))
        cols = {"id": pa.array(np.repeat(np.asarray(examples.column("id").to_pylist(), dtype=object), k),
                               pa.string()),
                "prediction": text,
                "loops": pa.array(np.tile(Ts, n), pa.int32()) if loops else pa.nulls(n * k, pa.int32())}
        for name, arr in zip(("margin", "entropy", "kl_prev"), stats):
            if arr is not None:
                v = arr.T.reshape(-1)
                cols[name] = pa.array(v, pa.float64(), mask=np.isnan(v))
        return pa.table(cols)


def load_adapter(arg: str, device: str = "cpu", batch_size: int = 256, **_options) -> ReferenceAdapter:
    """Factory for ``benchgen.registry.ADAPTERS['reference']``: ``arg`` is the run directory."""
    if not arg:
        raise BenchgenError("--model reference:RUN: give the run directory after 'reference:'")
    return ReferenceAdapter(arg, device=device, batch_size=batch_size)
