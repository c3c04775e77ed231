"""Evaluator adapter for reference-model runs: ``--model reference:RUN_DIR``.

:class:`ReferenceAdapter` implements the evaluators' model protocol
(:class:`benchgen.evaluators.models.protocol.ModelAdapter`) by name, like every other adapter.

Loops sweep in one pass: one forward pass of T_max = max(loops) iterations over the query
followed by the reference answer (teacher forcing; causal, so the query positions are unaffected)
reads every iteration out (norm -> head on the loop state at each t). It gives each T's first
answer token, the logit-lens readout ``lens_top1`` (that token as text), the readout at every input
position (``lens_positions``, token ids: the per-position "wavefront" probe), and the per-loop
statistics over the whole answer (:mod:`benchgen.evaluators.models.loop_stats`: margin, entropy,
KL to the previous swept T both ways, min-p KL, confidence, and ``latent_diff`` from the loop
states), the same definitions the hf and torchscript adapters report.

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
from benchgen.evaluators.models.loop_stats import STATS_KEY, LoopStats, definition_json
from benchgen.evaluators.models.protocol import ModelAdapter
from benchgen.reference_models import checkpoint as ckpt
from benchgen.reference_models.data import AnswerFormat, _lengths
from benchgen.vocab import list_array_from_matrix

UNKNOWN = 1 << 62  # a target id no vocabulary has: the position exists, the reference token is unknown


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
    def _readout(self, buf_t: torch.Tensor, target: np.ndarray, n_in: np.ndarray, Ts: list[int]):
        """One teacher-forced pass over query + reference answer: the first answer token of every
        iteration (T_max, B) and the per-loop statistics of the swept Ts over the whole answer."""
        model = self.model
        A = target.shape[1]
        rows = np.arange(len(n_in))
        known = (target[:, :-1] >= 0) & (target[:, :-1] < UNKNOWN)
        r, c = np.nonzero(known)
        tf = buf_t.clone()
        tf[torch.from_numpy(r).to(self.device), torch.from_numpy(n_in[r] + c).to(self.device)] = \
            torch.from_numpy(target[r, c]).to(self.device)
        x = tf[:, :int(n_in.max()) + A - 1]
        if model.cfg.conditioning == "loopformer":
            per_t = torch.stack([model(x, loops=T) for T in range(1, max(Ts) + 1)])
            states = None
        else:
            per_t, states = model(x, loops=max(Ts), readout="all", loop_states=True)
        pos = torch.from_numpy(np.minimum(n_in[:, None] - 1 + np.arange(A)[None, :], x.shape[1] - 1)).to(self.device)
        rr = torch.from_numpy(rows[:, None]).to(self.device)
        first = per_t[:, rr[:, 0], pos[:, 0]].argmax(-1)
        stats = LoopStats(target)
        for T in Ts:
            logp = torch.log_softmax(per_t[T - 1][rr, pos].double(), -1).cpu().numpy()
            stats.add(logp, None if states is None else states[T - 1][rr, pos].double().cpu().numpy())
        # the readout at every input position after each swept T (the wavefront probe), (len(Ts), B, max n_in)
        at_positions = per_t[[T - 1 for T in Ts], :, :int(n_in.max())].argmax(-1).cpu().numpy().astype(np.int32)
        return first, stats.result(), at_positions

    @torch.no_grad()
    def _predict_batch(self, n_in: np.ndarray, in_vals: np.ndarray, target: np.ndarray, Ts: list[int]):
        """Greedy answers of one batch at every swept T (first token from the shared pass) and its statistics."""
        model, fmt, pad = self.model, self.fmt, self.vocab.pad_id
        B = len(n_in)
        width = int(n_in.max()) + max(fmt.max_answer, target.shape[1])
        buf = np.full((B, width), pad, dtype=np.int64)
        buf[np.arange(width)[None, :] < n_in[:, None]] = in_vals
        buf_t = torch.from_numpy(buf).to(self.device)
        last = torch.from_numpy(n_in - 1).to(self.device)
        first, stats, at_positions = self._readout(buf_t, target, n_in, Ts)
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
        return np.stack(preds), stats, at_positions  # (len(Ts), B, max_answer), name -> (len(Ts), B), readouts

    def _targets(self, tsrc: pa.Table, n: int) -> np.ndarray:
        """(n, A) reference answer ids, -1 past each answer; UNKNOWN at the first position without targets."""
        if "target_ids" in tsrc.column_names:
            n_tg, tg_vals = _lengths(tsrc.column("target_ids"))
            if not len(n_tg) or n_tg.min() >= 1:
                A = max(int(n_tg.max()) if len(n_tg) else 1, 1)
                out = np.full((n, A), -1, dtype=np.int64)
                out[np.arange(A)[None, :] < n_tg[:, None]] = tg_vals
                return out
        return np.full((n, 1), UNKNOWN, dtype=np.int64)

    def predict(self, examples: pa.Table, loops: Sequence[int] | None, *, targets: pa.Table | None = None) -> pa.Table:
        """One row per (example, loop count), example-major; loops null when ``loops`` is None.

        ``targets`` (``target_ids``) is read only for teacher forcing the statistics, never for the
        predictions; without it, a ``target_ids`` column of ``examples`` is used (direct library calls).
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
        target = self._targets(targets if targets is not None else examples, len(n_all))
        starts = np.concatenate([[0], np.cumsum(n_all)])
        n, k = len(n_all), len(Ts)
        parts = [np.zeros((k, 0, self.fmt.max_answer), np.int64)]
        width = int(n_all.max()) if n else 1
        lens_pos = np.zeros((k, n, width), np.int32)  # the per-position readouts, padded to the longest input
        stats: dict[str, list[np.ndarray]] = {}
        for s in range(0, n, self.batch_size):
            e = min(s + self.batch_size, n)
            p, st, at_positions = self._predict_batch(n_all[s:e], vals_all[starts[s]:starts[e]], target[s:e], Ts)
            parts.append(p)
            lens_pos[:, s:e, :at_positions.shape[2]] = at_positions
            for name in set(stats) | set(st):
                stats.setdefault(name, [np.full((k, s), np.nan)]).append(st.get(name, np.full((k, e - s), np.nan)))
        flat = np.concatenate(parts, axis=1).transpose(1, 0, 2).reshape(n * k, -1)  # example-major rows
        if self.fmt.eos_id is not None:
            is_eos = flat == self.fmt.eos_id
            lengths = np.where(is_eos.any(1), is_eos.argmax(1), flat.shape[1])
        else:
            lengths = np.full(len(flat), self.fmt.fixed_len)
        cols = {"id": pa.array(np.repeat(np.asarray(examples.column("id").to_pylist(), dtype=object), k),
                               pa.string()),
                "prediction": self.vocab.render(list_array_from_matrix(flat, lengths)),
                "loops": pa.array(np.tile(Ts, n), pa.int32()) if loops else pa.nulls(n * k, pa.int32())}
        keep = None if loops else ("margin", "entropy", "confidence")  # no sweep: nothing compares loop counts
        for name, parts in stats.items():
            v = np.concatenate(parts, axis=1).T.reshape(-1)
            if (keep is None or name in keep) and not np.isnan(v).all():
                cols[name] = pa.array(v, pa.float64(), mask=np.isnan(v))
        cols["lens_top1"] = self.vocab.render(list_array_from_matrix(flat[:, :1], np.ones(len(flat), np.int64)))
        if loops:  # one list per (example, loop count): the readout at each of the example's input positions
            cols["lens_positions"] = list_array_from_matrix(lens_pos.transpose(1, 0, 2).reshape(n * k, width),
                                                            np.repeat(n_all, k))
        return pa.table(cols).replace_schema_metadata({STATS_KEY: definition_json().encode()})


def load_adapter(arg: str, device: str = "cpu", batch_size: int = 256, **_options) -> ReferenceAdapter:
    """Factory for ``benchgen.registry.ADAPTERS['reference']``: ``arg`` is the run directory."""
    if not arg:
        raise BenchgenError("--model reference:RUN: give the run directory after 'reference:'")
    return ReferenceAdapter(arg, device=device, batch_size=batch_size)
