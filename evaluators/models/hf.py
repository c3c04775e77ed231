"""``hf:LOCAL_DIR`` — a local transformers causal LM (``AutoModelForCausalLM`` + ``AutoTokenizer``).

Greedy, batched, left-padded decoding of each example's ``prompt``. The token budget is the
longest answer of the batch in the model's own tokens plus one (or ``max_new_tokens``);
generation stops at the tokenizer's eos. The decoded continuation (special tokens stripped) is
cut at the first newline and trimmed. With ``loop_kwarg=NAME`` the loop count is passed to
``generate`` (and from there to ``forward``) as ``NAME=T`` — e.g. ``num_steps`` for
recurrent-depth checkpoints. Per-example margin/entropy/KL-to-previous-loop are those of the
first answer token (raw logits). Nothing is downloaded: ``local_files_only=True`` always.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from benchgen.errors import BenchgenError
from benchgen.evaluators.models import first_step_stats, loop_counts, predictions_table, require_path


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


class HFAdapter:
    """Batched greedy generation with a local Hugging Face causal LM."""

    def __init__(self, path, *, device: str = "cpu", loop_kwarg: str | None = None,
                 trust_remote_code: bool = False, max_new_tokens: int | None = None):
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
        self.loop_kwarg = loop_kwarg
        self.supports_loops = loop_kwarg is not None
        self.max_new_tokens = max_new_tokens

    def _generate(self, enc, max_new: int, loops: int | None):
        kwargs = {} if loops is None else {self.loop_kwarg: int(loops)}
        try:
            return self.model.generate(
                **enc, max_new_tokens=max_new, do_sample=False, num_beams=1,
                pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id,
                return_dict_in_generate=True, output_logits=True, **kwargs)
        except Exception as e:  # noqa: BLE001 - any model failure becomes one clear line
            raise BenchgenError(f"model {self.name}: generate failed ({_first_line(e)})") from None

    takes_targets = True  # run_model passes targets= separately; the model only sees the prompt

    def predict(self, examples: pa.Table, loops: Sequence[int] | None, *, targets: pa.Table | None = None) -> pa.Table:
        """Greedy generation from ``prompt``; ``targets`` (``answer``: budget and margin) never reaches the model."""
        torch = self.torch
        counts = loop_counts(loops, self.supports_loops, self.name)
        tok = self.tokenizer
        prompts = examples.column("prompt").to_pylist()
        tsrc = targets if targets is not None else examples
        if "answer" not in tsrc.column_names:
            raise BenchgenError(f"model {self.name}: needs targets (answer) for its generation budget")
        answers = tok(tsrc.column("answer").to_pylist(), add_special_tokens=False)["input_ids"]
        target_first = np.array([a[0] if a else -1 for a in answers], dtype=np.int64)
        max_new = self.max_new_tokens or (max((len(a) for a in answers), default=0) + 1)
        enc = tok(prompts, return_tensors="pt", padding=True).to(self.device)
        width = enc["input_ids"].shape[1]
        texts, log_probs = [], []
        with torch.inference_mode():
            for t in counts:
                out = self._generate(enc, max_new, t)
                new = out.sequences[:, width:]
                decoded = pa.array(tok.batch_decode(new, skip_special_tokens=True), pa.string())
                first = pc.list_element(pc.split_pattern(decoded, "\n", max_splits=1), 0)
                texts.append(pc.utf8_trim_whitespace(first))
                scores = out.logits if getattr(out, "logits", None) else out.scores
                log_probs.append(torch.log_softmax(scores[0].float(), dim=-1).cpu().numpy())
        stats = first_step_stats(log_probs, target_first)
        return predictions_table(examples.column("id").combine_chunks(), texts, counts, stats)


def load(arg: str, *, device: str = "cpu", loop_kwarg: str | None = None, trust_remote_code: bool = False,
         max_new_tokens: int | None = None) -> HFAdapter:
    """Factory for ``hf:LOCAL_DIR`` (clear errors for a missing dir or missing transformers)."""
    path = require_path(arg, "hf", kind="directory")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise BenchgenError(f"--device {device}: CUDA is not available on this machine")
    return HFAdapter(path, device=device, loop_kwarg=loop_kwarg, trust_remote_code=trust_remote_code,
                     max_new_tokens=max_new_tokens)
