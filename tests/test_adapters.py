"""External model adapters (python:, torchscript:, hf:) through run_model and `benchgen evaluate`.

Every expected accuracy is recomputed here from the dataset rows by an independent route
(id parity, a per-example chain walk via ``bridges``, unpadded one-example greedy decoding).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner
from fixtures.tasks import khop
from fixtures.toy import tiny_gpt2

from benchgen.cli import main
from benchgen.config import build_config
from benchgen.dataset import load
from benchgen.errors import BenchgenError
from benchgen.evaluators.models.run import build_adapter, run_model

TINY = {"structure": "permutation", "num_entities": 16, "num_relations": 4, "out_degree": 4,
        "ood_fraction": 0.2, "train_hops": "2", "test_hops": "3,4", "train_per_hop": 80,
        "valid_per_hop": 8, "test_per_hop": 10, "systematic_per_hop": 10, "seed": 3}

EVEN_SRC = '''
import pyarrow as pa
import pyarrow.compute as pc

DS_PATH = None  # set by the fixture: these test models look answers up themselves (models never get them)
_TRUTH = None


def _truth(examples):
    global _TRUTH
    if _TRUTH is None:
        from benchgen.dataset import load

        ds = load(DS_PATH)
        _TRUTH = {r["id"]: r for s in ds.splits for r in ds.table(s).to_pylist()}
    return [_TRUTH[i] for i in examples["id"].to_pylist()]


def even(examples, loops):
    """Right answer for even ids (ids end in a 9-digit row number), wrong otherwise."""
    num = pc.cast(pc.utf8_slice_codeunits(examples["id"], -9), pa.int64())
    keep = pc.equal(pc.bit_wise_and(num, 1), 0)
    answers = pa.array([r["answer"] for r in _truth(examples)], pa.string())
    return pc.if_else(keep, answers, pa.scalar("<wrong>")).to_pylist()


def hops(examples, loops):
    """A 'looped' model that composes one hop per loop: the entity after min(loops, depth) hops."""
    out = []
    for row in _truth(examples):
        t = min(loops, row["depth"])
        out.append(row["answer"] if t == row["depth"] else "<e_%d>" % row["bridges"][t - 1])
    return out


hops.supports_loops = True


def too_short(examples, loops):
    return ["x"] * (examples.num_rows - 1)


def bad_type(examples, loops):
    return 42


def token_ids(examples, loops):
    return [r["target_ids"] for r in _truth(examples)]


def bad_ids(examples, loops):
    return [[10_000]] * examples.num_rows


class DupAdapter:
    name = "dup"
    supports_loops = False

    def predict(self, examples, loops):
        ids = examples["id"].combine_chunks()
        return pa.table({"id": pa.concat_arrays([ids[:1], ids[:-1]]), "prediction": examples["prompt"]})


class NotATable:
    supports_loops = False

    def predict(self, examples, loops):
        return {"id": [], "prediction": []}


def boom(examples, loops):
    raise RuntimeError("kaput")
'''


@pytest.fixture(scope="module")
def ds_path(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("adapters")
    cfg = build_config(khop.KhopConfig, khop.PRESETS, None, dict(TINY))
    return khop.generate(cfg, root / "khop", progress=False)


@pytest.fixture(scope="module")
def user_file(tmp_path_factory, ds_path) -> Path:
    path = tmp_path_factory.mktemp("user") / "user_models.py"
    path.write_text(EVEN_SRC.replace("DS_PATH = None", f"DS_PATH = {str(ds_path)!r}"))
    return path


def _rows(ds, splits=None):
    splits = splits or [s for s in ds.splits if s != "train"]
    return pa.concat_tables([ds.table(s) for s in splits]).to_pylist()


def _cells(results: dict) -> dict:
    return {(c["split"], c["depth"], c["loops"]): (c["n"], c["correct"]) for c in results["cells"]}


def _expected_cells(rows, ok, loops=(None,)) -> dict:
    out: dict = {}
    for t in loops:
        for r in rows:
            key = (r["split"], r["depth"], t)
            n, c = out.get(key, (0, 0))
            out[key] = (n + 1, c + int(ok(r, t)))
    return out


# --- python: ------------------------------------------------------------------------------------
def test_python_even_ids_known_accuracy_via_cli(ds_path, user_file, tmp_path):
    out = tmp_path / "ev"
    res = CliRunner().invoke(main, ["evaluate", str(ds_path), "--model", f"python:{user_file}:even",
                                    "--batch-size", "7", "--no-progress", "--out", str(out)])
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    rows = _rows(load(ds_path))
    expected = _expected_cells(rows, lambda r, t: int(r["id"][-9:]) % 2 == 0)
    assert _cells(results) == expected
    assert results["model"]["spec"] == f"python:{user_file}:even"
    # the predictions are saved: re-scoring them without the model gives the same cells
    preds = pq.read_table(out / "predictions.parquet")
    assert preds.num_rows == len(rows)
    res2 = CliRunner().invoke(main, ["evaluate", str(ds_path), "--predictions", str(out / "predictions.parquet"),
                                     "--out", str(tmp_path / "rescored")])
    assert res2.exit_code == 0, res2.output
    assert _cells(json.loads((tmp_path / "rescored" / "results.json").read_text())) == expected


def test_python_module_spec_limit_and_splits(ds_path, user_file, monkeypatch):
    monkeypatch.syspath_prepend(str(user_file.parent))
    ds = load(ds_path)
    adapter = build_adapter("python:user_models:even", ds)
    preds = run_model(ds, adapter, splits=["test_id", "test_depth"], batch_size=3, limit=5, progress=False)
    want = [r["id"] for s in ("test_id", "test_depth") for r in ds.table(s).slice(0, 5).to_pylist()]
    assert preds.column("id").to_pylist() == want
    assert preds.column("loops").null_count == preds.num_rows


def test_python_loops_sweep_cells(ds_path, user_file, tmp_path):
    out = tmp_path / "loops"
    res = CliRunner().invoke(main, ["evaluate", str(ds_path), "--model", f"python:{user_file}:hops",
                                    "--loops", "1-4", "--no-progress", "--out", str(out)])
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())

    def ok(r, t):  # after t hops the walk sits at bridges[t-1]; right when that equals the tail
        return t >= r["depth"] or f"<e_{r['bridges'][t - 1]}>" == r["answer"]

    assert _cells(results) == _expected_cells(_rows(load(ds_path)), ok, loops=(1, 2, 3, 4))
    assert results["metrics"]["overthinking"]["available"]


def test_python_token_id_predictions_are_rendered(ds_path, user_file):
    ds = load(ds_path)
    preds = run_model(ds, build_adapter(f"python:{user_file}:token_ids", ds), progress=False)
    answers = pa.concat_tables([ds.table(s) for s in ds.splits if s != "train"]).column("answer")
    assert preds.column("prediction").to_pylist() == answers.to_pylist()


@pytest.mark.parametrize("fn, message", [
    ("too_short", r"returned 4 predictions for 5 examples"),
    ("bad_type", r"expected a sequence of 5 predictions or a table, got int"),
    ("bad_ids", r"token ids outside the vocabulary"),
    ("DupAdapter", r"model dup: output has ids not in the batch|duplicate"),
    ("NotATable", r"predict\(\) returned dict, expected a pyarrow Table"),
    ("boom", r"model python:boom: raised RuntimeError: kaput"),
])
def test_python_malformed_output_names_the_adapter(ds_path, user_file, fn, message):
    ds = load(ds_path)
    adapter = build_adapter(f"python:{user_file}:{fn}", ds)
    with pytest.raises(BenchgenError, match=message):
        run_model(ds, adapter, splits=["test_id"], batch_size=5, progress=False)


def test_duplicate_rows_detected(ds_path, user_file):
    ds = load(ds_path)
    adapter = build_adapter(f"python:{user_file}:DupAdapter", ds)
    with pytest.raises(BenchgenError, match=r"model dup: output has duplicate \(id, loops\) rows"):
        run_model(ds, adapter, splits=["test_id"], batch_size=5, progress=False)


@pytest.mark.parametrize("spec, message", [
    ("nocolon", r"expected SCHEME:ARG"),
    ("zzz:thing", r"expected SCHEME:ARG with scheme one of hf:..., python:..., reference:..., torchscript:..."),
    ("python:nomodule", r"expected python:MODULE:NAME"),
    ("python:surely_not_a_module_xyz:fn", r"no module named .surely_not_a_module_xyz. in the working directory"),
    ("python:/no/such/file.py:fn", r"file /no/such/file.py does not exist"),
    ("torchscript:/no/such/model.pt", r"local file /no/such/model.pt does not exist .*never downloads"),
    ("hf:/no/such/ckpt", r"local directory /no/such/ckpt does not exist .*never downloads"),
])
def test_bad_specs_and_missing_paths_via_cli(ds_path, tmp_path, spec, message):
    res = CliRunner().invoke(main, ["evaluate", str(ds_path), "--model", spec, "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert res.output.startswith("error: ")
    assert len(res.output.strip().splitlines()) == 1
    import re

    assert re.search(message, res.output), res.output
    assert not (tmp_path / "o").exists()


def test_option_checks(ds_path, user_file, tmp_path):
    run = CliRunner().invoke
    r = run(main, ["evaluate", str(ds_path), "--model", f"python:{user_file}:even", "--loops", "1-2",
                   "--out", str(tmp_path / "a")])
    assert r.exit_code == 2 and "does not support loops" in r.output
    r = run(main, ["evaluate", str(ds_path), "--model", f"python:{user_file}:even", "--loop-kwarg", "n",
                   "--out", str(tmp_path / "b")])
    assert r.exit_code == 2 and "does not take --loop-kwarg" in r.output
    r = run(main, ["evaluate", str(ds_path), "--model", f"python:{user_file}:even", "--predictions", "p.parquet",
                   "--out", str(tmp_path / "c")])
    assert r.exit_code == 2 and "exactly one of" in r.output
    r = run(main, ["evaluate", str(ds_path), "--predictions", "p.parquet", "--limit", "3", "--out", str(tmp_path / "d")])
    assert r.exit_code == 2 and "need --model" in r.output
    r = run(main, ["evaluate", str(ds_path), "--model", f"python:{user_file}:even", "--batch-size", "0",
                   "--out", str(tmp_path / "e")])
    assert r.exit_code == 2 and "--batch-size" in r.output


# --- torchscript: -------------------------------------------------------------------------------
class ChainWalker(torch.nn.Module):
    """Walks a k-hop query position by position: logits at position i = one-hot of the entity
    reached so far (at most ``loops`` hops). Causal: position i only reads tokens <= i."""

    def __init__(self, table: torch.Tensor, n_special: int, n_ent: int, vocab_size: int):
        super().__init__()
        self.register_buffer("table", table)
        self.n_special = n_special
        self.n_ent = n_ent
        self.vocab_size = vocab_size

    def forward(self, x: torch.Tensor, loops: int = 1000) -> torch.Tensor:
        b, length = x.shape
        state = torch.zeros(b, dtype=torch.long)
        hops = torch.zeros(b, dtype=torch.long)
        out = torch.zeros(b, length, self.vocab_size)
        rows = torch.arange(b)
        for i in range(length):
            tok = x[:, i]
            ent = (tok >= self.n_special) & (tok < self.n_special + self.n_ent)
            rel = tok >= self.n_special + self.n_ent
            state = torch.where(ent, tok - self.n_special, state)
            r = torch.clamp(tok - self.n_special - self.n_ent, 0, self.table.shape[1] - 1)
            step = rel & (hops < loops)
            state = torch.where(step, self.table[state, r], state)
            hops = hops + step.long()
            out[rows, i, state + self.n_special] = 1.0
        return out


class WrongShape(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0], 7)


@pytest.fixture(scope="module")
def walker_file(ds_path, tmp_path_factory) -> Path:
    ds = load(ds_path)
    kg = ds.extra("kg.parquet").to_pydict()
    n_ent, n_rel = TINY["num_entities"], TINY["num_relations"]
    table = torch.zeros(n_ent, n_rel, dtype=torch.long)
    table[torch.tensor(kg["head"]).long(), torch.tensor(kg["relation"]).long()] = torch.tensor(kg["tail"]).long()
    assert ds.vocab.tokens[4] == "<e_0>" and ds.vocab.tokens[4 + n_ent] == "<r_0>"
    path = tmp_path_factory.mktemp("ts") / "walker.pt"
    torch.jit.script(ChainWalker(table, 4, n_ent, len(ds.vocab))).save(str(path))
    return path


def test_torchscript_walker_exact_and_margins(ds_path, walker_file):
    ds = load(ds_path)
    preds = run_model(ds, build_adapter(f"torchscript:{walker_file}", ds), batch_size=6, progress=False)
    rows = _rows(ds)
    assert preds.column("prediction").to_pylist() == [r["answer"] for r in rows]
    # one-hot logits: log-softmax margin of the right token is exactly 1
    assert np.allclose(preds.column("margin").to_numpy(), 1.0)


def test_torchscript_loop_kwarg_sweep(ds_path, walker_file, tmp_path):
    out = tmp_path / "ts"
    res = CliRunner().invoke(main, ["evaluate", str(ds_path), "--model", f"torchscript:{walker_file}",
                                    "--loop-kwarg", "loops", "--loops", "1-4", "--batch-size", "5",
                                    "--no-progress", "--out", str(out)])
    assert res.exit_code == 0, res.output

    def ok(r, t):
        return t >= r["depth"] or f"<e_{r['bridges'][t - 1]}>" == r["answer"]

    results = json.loads((out / "results.json").read_text())
    assert _cells(results) == _expected_cells(_rows(load(ds_path)), ok, loops=(1, 2, 3, 4))
    preds = pq.read_table(out / "predictions.parquet").to_pylist()
    first_loop = [p for p in preds if p["loops"] == 1]
    assert all(p["kl_prev"] is None for p in first_loop)
    wrong = [p for p in preds if p["loops"] == 1 and p["margin"] < 0]
    assert wrong and all(p["margin"] == pytest.approx(-1.0) for p in wrong)


def test_torchscript_malformed_logits(ds_path, tmp_path):
    ds = load(ds_path)
    path = tmp_path / "bad.pt"
    torch.jit.script(WrongShape()).save(str(path))
    with pytest.raises(BenchgenError, match=r"model torchscript:bad.pt: expected logits of shape \(B, L, V\)"):
        run_model(ds, build_adapter(f"torchscript:{path}", ds), splits=["test_id"], progress=False)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(BenchgenError, match=r"not a loadable TorchScript file"):
        build_adapter(f"torchscript:{junk}", ds)


# --- hf: ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hf_dir(ds_path, tmp_path_factory) -> Path:
    """A 1-layer GPT-2 with a word-level tokenizer over the dataset vocab, trained a few steps."""
    pytest.importorskip("transformers")
    return tiny_gpt2(load(ds_path), tmp_path_factory.mktemp("hf") / "tiny-gpt2", n_positions=16, steps=60)


def _greedy_one(model, tok, prompt: str, steps: int) -> str:
    """Reference: unpadded greedy decoding of one prompt with plain forward calls."""
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    out = []
    with torch.no_grad():
        for _ in range(steps):
            nxt = int(model(input_ids=ids).logits[0, -1].argmax())
            if nxt == tok.eos_token_id:
                break
            out.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    return tok.decode(out, skip_special_tokens=True).split("\n")[0].strip()


def test_hf_batched_left_padded_matches_unpadded_greedy(ds_path, hf_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ds = load(ds_path)
    adapter = build_adapter(f"hf:{hf_dir}", ds)
    assert adapter.supports_loops is False
    preds = run_model(ds, adapter, splits=["train", "test_depth"], batch_size=8, limit=24, progress=False)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(hf_dir, local_files_only=True)
    rows = [r for s in ("train", "test_depth") for r in ds.table(s).slice(0, 24).to_pylist()]
    want = [_greedy_one(model, tok, r["prompt"], 2) for r in rows]  # 1-token answers: budget 1 + 1
    assert preds.column("prediction").to_pylist() == want
    assert preds.column("id").to_pylist() == [r["id"] for r in rows]
    # training worked at all: better than chance on the training facts it saw
    acc = np.mean([p == r["answer"] for p, r in zip(want[:24], rows[:24])])
    assert acc > 1.0 / TINY["num_entities"]


def test_hf_cli_and_loop_kwarg(ds_path, hf_dir, tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

    class LoopedConfig(GPT2Config):
        model_type = "benchgen-test-looped-gpt2"

    class LoopedGPT2(GPT2LMHeadModel):
        """num_steps >= 2 pushes every prediction to <e_0> (so the loop count visibly matters)."""

        config_class = LoopedConfig
        seen: list = []

        def forward(self, input_ids=None, num_steps: int = 1, **kwargs):
            LoopedGPT2.seen.append(num_steps)
            out = super().forward(input_ids=input_ids, **kwargs)
            if num_steps >= 2:
                out.logits[..., 4] += 1e4
            return out

    AutoConfig.register(LoopedConfig.model_type, LoopedConfig, exist_ok=True)
    AutoModelForCausalLM.register(LoopedConfig, LoopedGPT2, exist_ok=True)
    base = GPT2LMHeadModel.from_pretrained(hf_dir, local_files_only=True)
    looped = LoopedGPT2(LoopedConfig(**base.config.to_dict()))
    looped.load_state_dict(base.state_dict())
    ldir = tmp_path / "looped"
    looped.save_pretrained(ldir)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (ldir / f).write_bytes((hf_dir / f).read_bytes())
    for f in hf_dir.glob("special_tokens_map.json"):
        (ldir / f.name).write_bytes(f.read_bytes())

    plain = tmp_path / "plain"
    r = CliRunner().invoke(main, ["evaluate", str(ds_path), "--model", f"hf:{hf_dir}", "--limit", "6",
                                  "--batch-size", "4", "--no-progress", "--out", str(plain)])
    assert r.exit_code == 0, r.output
    res = json.loads((plain / "results.json").read_text())
    assert res["coverage"] and res["model"]["spec"] == f"hf:{hf_dir}"
    plain_preds = pq.read_table(plain / "predictions.parquet").to_pylist()

    out = tmp_path / "loop"
    LoopedGPT2.seen.clear()
    r = CliRunner().invoke(main, ["evaluate", str(ds_path), "--model", f"hf:{ldir}", "--loop-kwarg", "num_steps",
                                  "--loops", "1,2", "--limit", "6", "--batch-size", "4", "--no-progress",
                                  "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert set(LoopedGPT2.seen) == {1, 2}
    preds = pq.read_table(out / "predictions.parquet").to_pylist()
    at1 = [p["prediction"] for p in preds if p["loops"] == 1]
    at2 = [p["prediction"] for p in preds if p["loops"] == 2]
    assert at1 == [p["prediction"] for p in plain_preds]
    assert at2 == ["<e_0><e_0>"] * len(at1)  # never emits eos: budget = longest answer (1) + 1
    assert all(p["kl_prev"] is not None and p["kl_prev"] > 0 for p in preds if p["loops"] == 2)


def test_hf_without_transformers_is_a_clear_error(ds_path, hf_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    from benchgen.install import install_hint

    with pytest.raises(BenchgenError, match=re.escape(install_hint("hf"))):
        build_adapter(f"hf:{hf_dir}", load(ds_path))


def test_hf_not_a_checkpoint(ds_path, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BenchgenError, match=r"cannot load a causal LM and tokenizer from this directory"):
        build_adapter(f"hf:{tmp_path / 'empty'}", load(ds_path))
