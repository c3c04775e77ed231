"""``torchscript:FILE.pt`` — a scripted/traced model: token ids in, logits out.

Contract for the scripted module: ``forward(input_ids: LongTensor[B, L]) -> logits[B, L, V]``
(or a tuple whose first item is the logits), causal over positions. Queries are the dataset's
``input_ids``, right-padded with the vocabulary's pad id; the next token is read at each row's
last real position, so a causal model never sees padding. Decoding is greedy for the dataset's
answer budget: the fixed answer length when every answer has one length, else the longest
answer + 1 tokens, stopping at ``<eos>`` (never a row's own answer length, which would give the
answer's length away); the ids are rendered with the dataset vocabulary. With
``loop_kwarg=NAME`` the loop count is passed as ``forward(ids, NAME=T)`` (refused when the logits
of the first batch are identical at the smallest and largest T). Per loop count, one teacher-forced
pass over query + reference answer gives the statistics over the whole answer (:mod:`.loop_stats`)
and, for single-token answers, the logit-lens readout ``lens_top1``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from benchgen.errors import BenchgenError
from benchgen.evaluators.models import loop_counts, predictions_table, require_path
from benchgen.evaluators.models.loop_knob import KwargKnob, check_effect
from benchgen.evaluators.models.loop_stats import LoopStats
from benchgen.vocab import EOS, Vocab, list_array_from_matrix


def _padded(col: pa.ChunkedArray | pa.Array, width: int | None, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded (B, width) int64 matrix of a list<int> column (width None: the longest row), and the lengths."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    lengths = np.diff(np.asarray(arr.offsets))
    if width is None:
        width = max(int(lengths.max()) if len(lengths) else 1, 1)
    flat = np.asarray(arr.flatten(), dtype=np.int64)
    out = np.full((len(arr), width), pad, dtype=np.int64)
    mask = np.arange(width)[None, :] < lengths[:, None]
    out[mask] = flat
    return out, lengths


_FRAME = re.compile(r'\s*File "(?P<file>[^"]+)", line (?P<line>\d+)')


def failure_cause(e: BaseException) -> str:
    """One line for a model failure. TorchScript's own message starts "The following operation failed in
    the TorchScript interpreter." and hides the cause in a traceback: give its last line (the error) and
    the failing operation as the traceback marks it (``~~~ <--- HERE``), innermost first, with the user's
    own line that called it."""
    text = str(e)
    lines = text.splitlines()
    if "TorchScript interpreter" not in text or len(lines) < 2:
        return f"{type(e).__name__}: {lines[0] if lines else ''}"
    error = next(x.strip() for x in reversed(lines) if x.strip())
    start = next((i for i, x in enumerate(lines) if x.startswith("Traceback of TorchScript, original code")), 0)
    frames, where = [], None
    for prev, line in zip(lines[start:], lines[start + 1:]):
        m = _FRAME.match(prev)
        if m:
            where = f"{m['file']}:{m['line']}"
        if "<--- HERE" in line and where is not None:
            lo, hi = line.find("~"), line.rfind("~") + 1
            frames.append((where, prev.strip(), prev[lo:hi].strip() if 0 <= lo < hi else prev.strip()))
    if not frames:
        return error
    where, code, op = frames[-1]
    out = f"{error}; failing operation `{op}` in `{code}` at {where}"
    if len(frames) > 1:
        out += f", called from `{frames[0][1]}` at {frames[0][0]}"
    return out


class TorchScriptAdapter:
    """Greedy decoding with a TorchScript module over the dataset's token ids."""

    def __init__(self, path, *, vocab: Vocab, device: str = "cpu", loop_kwarg: str | None = None,
                 budget: int | None = None):
        import torch

        self.budget = budget  # answer tokens to decode for every row (None: each row's target length)
        self.torch = torch
        self.device = device
        try:
            self.model = torch.jit.load(str(path), map_location=device)
        except (RuntimeError, ValueError) as e:
            raise BenchgenError(f"--model torchscript:{path}: not a loadable TorchScript file "
                                f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
        self.model.eval()
        self.vocab = vocab
        self.loop_kwarg = loop_kwarg
        self.name = f"torchscript:{path.name}"
        self.supports_loops = loop_kwarg is not None
        self.eos = vocab.id(EOS) if EOS in vocab.tokens else -1
        self.knob_checked = False

    def _logits(self, ids, loops: int | None):
        torch = self.torch
        kwargs = {} if loops is None else {self.loop_kwarg: int(loops)}
        try:
            out = self.model(ids, **kwargs)
        except Exception as e:  # noqa: BLE001 - any model failure becomes one clear line
            raise BenchgenError(f"model {self.name}: forward failed on input of shape "
                                f"{tuple(ids.shape)} ({failure_cause(e)})") from None
        if isinstance(out, (tuple, list)) and out:
            out = out[0]
        if not isinstance(out, torch.Tensor) or out.dim() != 3 or tuple(out.shape[:2]) != tuple(ids.shape):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise BenchgenError(f"model {self.name}: expected logits of shape (B, L, V) = "
                                f"({ids.shape[0]}, {ids.shape[1]}, V), got {shape}")
        if out.shape[2] < len(self.vocab):
            raise BenchgenError(f"model {self.name}: logits have {out.shape[2]} classes, the dataset "
                                f"vocabulary has {len(self.vocab)} tokens")
        return out[:, :, : len(self.vocab)].float()

    takes_targets = True  # run_model passes targets= separately; the model only sees input_ids

    def predict(self, examples: pa.Table, loops: Sequence[int] | None, *, targets: pa.Table | None = None) -> pa.Table:
        """Greedy decoding; ``targets`` (``target_ids``: decode budget and margin) never reaches the model."""
        torch = self.torch
        counts = loop_counts(loops, self.supports_loops, self.name)
        tsrc = targets if targets is not None else examples
        if "target_ids" not in tsrc.column_names:
            raise BenchgenError(f"model {self.name}: needs targets (target_ids) for its decode budget")
        _, tlen = _padded(tsrc.column("target_ids"), None, -1)
        if self.budget is not None:
            tlen = np.full(len(tlen), self.budget, dtype=tlen.dtype)
        steps = max(int(tlen.max()), 1) if len(tlen) else 1
        inp_col = examples.column("input_ids")
        lmax = int(np.diff(np.asarray(inp_col.combine_chunks().offsets)).max()) if examples.num_rows else 0
        base, lengths = _padded(inp_col, lmax + steps, self.vocab.pad_id)
        rows = np.arange(examples.num_rows)
        stats, lens = self._stats(base, lengths, tsrc, counts)
        texts = []
        for t in counts:
            buf = torch.from_numpy(base.copy()).to(self.device)
            cur = lengths.copy()
            out = np.full((examples.num_rows, steps), self.vocab.pad_id, dtype=np.int64)
            gen_len = np.zeros(examples.num_rows, dtype=np.int64)
            done = np.zeros(examples.num_rows, dtype=bool)
            with torch.inference_mode():
                for s in range(steps):
                    logits = self._logits(buf[:, : lmax + s], t)
                    nxt = logits[torch.from_numpy(rows), torch.from_numpy(cur - 1)].argmax(dim=-1).cpu().numpy()
                    active = ~done & (s < tlen)
                    stop = active & (nxt == self.eos)
                    write = active & ~stop
                    out[write, s] = nxt[write]
                    gen_len += write
                    done |= stop | ~active
                    buf[torch.from_numpy(rows), torch.from_numpy(np.minimum(cur, lmax + steps - 1))] = \
                        torch.from_numpy(nxt).to(self.device)
                    cur = cur + write
            texts.append(self.vocab.render(list_array_from_matrix(out, gen_len)))
        table = predictions_table(examples.column("id").combine_chunks(), texts, counts, stats)
        return table.append_column("lens_top1", pa.concat_arrays(lens)) if lens else table

    def _stats(self, base: np.ndarray, lengths: np.ndarray, tsrc: pa.Table, counts: list[int | None]):
        """Per-loop statistics from one teacher-forced pass per T over query + reference answer, and the
        logit-lens top-1 at the answer position (single-token answers, with a loop knob)."""
        torch = self.torch
        target, tlen = _padded(tsrc.column("target_ids"), None, -1)
        A = target.shape[1]
        B = len(lengths)
        width = int(lengths.max()) + A - 1 if B else 1
        tf = np.full((B, max(width, 1)), self.vocab.pad_id, dtype=np.int64)
        tf[:, : min(base.shape[1], tf.shape[1])] = base[:, : tf.shape[1]]
        a_row, a_col = np.nonzero(np.arange(A - 1)[None, :] < (tlen - 1)[:, None])
        tf[a_row, lengths[a_row] + a_col] = target[a_row, a_col]
        pos = torch.from_numpy(np.clip(lengths[:, None] - 1 + np.arange(A)[None, :], 0, tf.shape[1] - 1))
        stats, firsts, lens = LoopStats(target), [], []
        rows = torch.arange(B)[:, None]
        with torch.inference_mode():
            for t in counts:
                logp = torch.log_softmax(self._logits(torch.from_numpy(tf).to(self.device), t)[rows, pos], -1)
                logp = logp.cpu().numpy()
                stats.add(logp)
                firsts.append(logp[:, 0])
                if self.loop_kwarg is not None and A == 1:
                    lens.append(self.vocab.render(list_array_from_matrix(logp[:, 0].argmax(-1)[:, None], np.ones(B, int))))
        if self.loop_kwarg is not None and counts != [None] and not self.knob_checked:
            lo, hi = int(np.argmin(counts)), int(np.argmax(counts))
            check_effect(KwargKnob(self.loop_kwarg), counts[lo], counts[hi], firsts[lo], firsts[hi])
            self.knob_checked = True
        return stats.result(swept=counts != [None]), lens


def answer_budget(dataset) -> int | None:
    """Answer tokens to decode, the same for every row: the fixed length, or the longest answer + 1 (eos)."""
    if dataset is None:
        return None
    lengths = [np.diff(np.asarray(dataset.table(s, columns=["target_ids"]).column("target_ids")
                                  .combine_chunks().offsets)) for s in dataset.splits]
    lengths = np.concatenate([x for x in lengths if len(x)]) if any(len(x) for x in lengths) else np.zeros(0)
    if len(lengths) == 0:
        return None
    return int(lengths.max()) if lengths.min() == lengths.max() else int(lengths.max()) + 1


def load(arg: str, *, vocab: Vocab, device: str = "cpu", loop_kwarg: str | None = None,
         dataset=None) -> TorchScriptAdapter:
    """Factory for ``torchscript:FILE.pt`` (needs the dataset vocabulary to render ids)."""
    path = require_path(arg, "torchscript", kind="file")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise BenchgenError(f"--device {device}: CUDA is not available on this machine")
    return TorchScriptAdapter(path, vocab=vocab, device=device, loop_kwarg=loop_kwarg, budget=answer_budget(dataset))
