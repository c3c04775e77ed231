"""``hf:LOCAL_DIR`` — a local transformers causal LM (``AutoModelForCausalLM`` + ``AutoTokenizer``).

Greedy, batched, left-padded decoding of each example's ``prompt``. The token budget is the
longest answer of the batch in the model's own tokens plus one (or ``max_new_tokens``);
generation stops at the tokenizer's eos. The decoded continuation (special tokens stripped) is
cut at the first newline and trimmed. Nothing is downloaded: ``local_files_only=True`` always.

Loop counts (``loops``) reach the model through one explicit knob (:mod:`.loop_knob`):
``loop_kwarg=NAME`` passes ``NAME=T`` to ``generate``/``forward`` (Huginn's ``num_steps``);
``loop_config=NAME`` sets the config field ``NAME`` to T (``loop_num_passes`` of
``Inkling2LoopForCausalLM``). A sweep tokenises and pads each batch once and runs every T as one
batched generation plus one teacher-forced forward pass (prompt + reference answer, right-padded)
that gives the per-loop statistics over the whole answer (:mod:`.loop_stats`) and the logit-lens
readout ``lens_top1`` (the top-1 next token at the answer position) when answers are single tokens.
On the first batch the knob must change the logits between the smallest and largest T.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from benchgen.errors import BenchgenError
from benchgen.evaluators.models import loop_counts, predictions_table, require_path
from benchgen.evaluators.models.loop_knob import check_effect, make_knob
from benchgen.evaluators.models.loop_stats import LoopStats


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _ragged(lists: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Flat int64 values and lengths of a list of token-id lists."""
    lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    return np.fromiter(chain.from_iterable(lists), dtype=np.int64, count=int(lengths.sum())), lengths


def teacher_forced(prompts: list[list[int]], answers: list[list[int]], pad: int):
    """Right-padded prompt+answer ids (B, L), their attention mask, the position whose logits predict
    each answer token (B, A) and the answer targets (B, A), -1 past a row's answer."""
    p_flat, p_len = _ragged(prompts)
    a_flat, a_len = _ragged(answers)
    B = len(prompts)
    width = max(int((p_len + a_len).max()) if B else 1, 1)
    ids = np.full((B, width), pad, dtype=np.int64)
    p_row = np.repeat(np.arange(B), p_len)
    ids[p_row, np.arange(len(p_flat)) - np.repeat(np.cumsum(p_len) - p_len, p_len)] = p_flat
    a_row = np.repeat(np.arange(B), a_len)
    a_col = np.arange(len(a_flat)) - np.repeat(np.cumsum(a_len) - a_len, a_len)
    ids[a_row, p_len[a_row] + a_col] = a_flat
    mask = (np.arange(width)[None, :] < (p_len + a_len)[:, None]).astype(np.int64)
    A = max(int(a_len.max()) if B else 0, 1)
    target = np.full((B, A), -1, dtype=np.int64)
    target[a_row, a_col] = a_flat
    pos = np.clip(p_len[:, None] - 1 + np.arange(A)[None, :], 0, width - 1)
    return ids, mask, pos, target


class HFAdapter:
    """Batched greedy generation with a local Hugging Face causal LM."""

    takes_targets = True  # run_model passes targets= separately; the model only sees the prompt

    def __init__(self, path, *, device: str = "cpu", loop_kwarg: str | None = None, loop_config: str | None = None,
                 trust_remote_code: bool = False, max_new_tokens: int | None = None):
        """Load the checkpoint and tokenizer (local files only) and the loop knob."""
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError:
            from benchgen.install import install_hint

            raise BenchgenError(f"--model hf:...: the transformers package is not installed "
                                f"({install_hint('hf')})") from None
        self.torch = torch
        self.name = f"hf:{path.name}"
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(
                str(path), local_files_only=True, trust_remote_code=trust_remote_code)
            self.model = AutoModelForCausalLM.from_pretrained(
                str(path), local_files_only=True, trust_remote_code=trust_remote_code)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise BenchgenError(f"--model hf:{path}: cannot load a causal LM and tokenizer from this "
                                f"directory ({_first_line(e)})") from None
        self.model.to(device).eval()
        self.device = device
        tok = self.tokenizer
        tok.padding_side = "left"
        if tok.pad_token_id is None:
            if tok.eos_token_id is None:
                raise BenchgenError(f"--model hf:{path}: the tokenizer has neither a pad nor an eos token")
            tok.pad_token = tok.eos_token
        self.knob = make_knob(self.model, loop_kwarg, loop_config)
        self.supports_loops = self.knob is not None
        self.max_new_tokens = max_new_tokens
        self.knob_checked = False
        self.metadata = {"lens": "top-1 next token at the answer position with the loop knob at T (the model's "
                                 "own post-loop layers, final norm and unembedding)"} if self.knob else {}

    def _call(self, what: str, fn, loops: int | None):
        """Run ``fn(**knob kwargs)`` with the knob at ``loops``; any model failure becomes one line."""
        kwargs = self.knob.kwargs(loops) if self.knob else {}
        try:
            if self.knob is None:
                return fn(**kwargs)
            with self.knob.at(loops):
                return fn(**kwargs)
        except BenchgenError:
            raise
        except Exception as e:  # noqa: BLE001 - any model failure becomes one clear line
            raise BenchgenError(f"model {self.name}: {what} failed ({_first_line(e)})") from None

    def _generate(self, enc, max_new: int, loops: int | None):
        """One batched greedy generation with the loop knob at ``loops``."""
        return self._call("generate", lambda **kw: self.model.generate(
            **enc, max_new_tokens=max_new, do_sample=False, num_beams=1,
            pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id, **kw), loops)

    def _answer_log_probs(self, tf, loops: int | None) -> np.ndarray:
        """Log-softmax (B, A, V) at the answer positions of the teacher-forced batch."""
        torch = self.torch
        ids, mask, pos = tf
        out = self._call("forward", lambda **kw: self.model(input_ids=ids, attention_mask=mask, **kw), loops)
        logits = out.logits if hasattr(out, "logits") else out[0]
        rows = torch.arange(ids.shape[0], device=logits.device)[:, None]
        return torch.log_softmax(logits[rows, pos].float(), dim=-1).cpu().numpy()

    def predict(self, examples: pa.Table, loops: Sequence[int] | None, *, targets: pa.Table | None = None) -> pa.Table:
        """Greedy generation from ``prompt``; ``targets`` (``answer``: budget and statistics) never reaches the model."""
        torch = self.torch
        counts = loop_counts(loops, self.supports_loops, self.name)
        tok = self.tokenizer
        prompts = examples.column("prompt").to_pylist()
        tsrc = targets if targets is not None else examples
        if "answer" not in tsrc.column_names:
            raise BenchgenError(f"model {self.name}: needs targets (answer) for its generation budget")
        answers = tok(tsrc.column("answer").to_pylist(), add_special_tokens=False)["input_ids"]
        max_new = self.max_new_tokens or (max((len(a) for a in answers), default=0) + 1)
        enc = tok(prompts, return_tensors="pt", padding=True).to(self.device)
        width = enc["input_ids"].shape[1]
        ids, mask, pos, target = teacher_forced(tok(prompts)["input_ids"], answers, tok.pad_token_id)
        tf = tuple(torch.from_numpy(x).to(self.device) for x in (ids, mask, pos))
        single = bool(len(target)) and bool((target[:, 1:] < 0).all() if target.shape[1] > 1 else True)
        stats, texts, lens, firsts = LoopStats(target), [], [], []
        with torch.inference_mode():
            for t in counts:  # teacher-forced pass first: a knob without effect is refused before generating
                logp = self._answer_log_probs(tf, t)
                stats.add(logp)
                firsts.append(logp[:, 0])
                if single and self.knob is not None:
                    lens.append(pa.array(tok.batch_decode(logp[:, 0].argmax(-1)[:, None].tolist()), pa.string()))
            self._check_knob(counts, firsts)
            for t in counts:
                out = self._generate(enc, max_new, t)
                new = out.sequences[:, width:] if hasattr(out, "sequences") else out[:, width:]
                decoded = pa.array(tok.batch_decode(new, skip_special_tokens=True), pa.string())
                first = pc.list_element(pc.split_pattern(decoded, "\n", max_splits=1), 0)
                texts.append(pc.utf8_trim_whitespace(first))
        table = predictions_table(examples.column("id").combine_chunks(), texts, counts,
                                  stats.result(swept=counts != [None]))
        if lens:
            table = table.append_column("lens_top1", pc.utf8_trim_whitespace(pa.concat_arrays(lens)))
        return table

    def _check_knob(self, counts: list[int | None], firsts: list[np.ndarray]) -> None:
        """On the first batch: the knob must change the answer-position logits between min and max T."""
        if self.knob_checked or self.knob is None or counts == [None]:
            return
        lo, hi = int(np.argmin(counts)), int(np.argmax(counts))
        check_effect(self.knob, counts[lo], counts[hi], firsts[lo], firsts[hi])
        self.knob_checked = True


def load(arg: str, *, device: str = "cpu", loop_kwarg: str | None = None, loop_config: str | None = None,
         trust_remote_code: bool = False, max_new_tokens: int | None = None) -> HFAdapter:
    """Factory for ``hf:LOCAL_DIR`` (clear errors for a missing dir or missing transformers)."""
    path = require_path(arg, "hf", kind="directory")
    if loop_kwarg and loop_config:
        raise BenchgenError("--loop-config and --loop-kwarg: give one loop knob, not both")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise BenchgenError(f"--device {device}: CUDA is not available on this machine")
    return HFAdapter(path, device=device, loop_kwarg=loop_kwarg, loop_config=loop_config,
                     trust_remote_code=trust_remote_code, max_new_tokens=max_new_tokens)
