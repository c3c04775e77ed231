"""Training loop, checkpoints, resume, evaluator adapter and the `benchgen train` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from fixtures.toy import commit

from benchgen.dataset import DatasetWriter, load
from benchgen.errors import BenchgenError
from benchgen.reference_models import checkpoint as ckpt
from benchgen.reference_models.config import ModelConfig, TrainConfig
from benchgen.reference_models.train import accuracy, lr_at, sample_loops, train
from benchgen.schema import example_schema, make_ids
from benchgen.vocab import SPECIALS, Vocab

N_SYM = 6


def _split_table(task: str, split: str, inputs: list[list[int]], targets: list[list[int]], vocab: Vocab) -> pa.Table:
    li = pa.array(inputs, pa.list_(pa.int32()))
    lt = pa.array(targets, pa.list_(pa.int32()))
    return pa.table({
        "id": make_ids(task, split, 0, len(inputs)), "split": pa.array([split] * len(inputs)),
        "depth": pa.array([len(t) for t in targets], pa.int32()), "input_ids": li, "target_ids": lt,
        "prompt": vocab.render(li), "answer": vocab.render(lt)}, schema=example_schema())


def make_dataset(path: Path, multi_token: bool = False, seed: int = 0) -> Path:
    """Tiny task: input = 1-3 symbols + <sep>; answer = the symbol after the first one (single
    token), or the input symbols reversed (variable length, eos-terminated when ``multi_token``)."""
    vocab = Vocab(list(SPECIALS) + [f"<s{i}>" for i in range(N_SYM)])
    sep = vocab.id("<sep>")
    rng = np.random.default_rng(seed)
    rows_in, rows_out = [], []
    for length in (1, 2, 3):
        for _ in range(12):
            sym = (rng.integers(0, N_SYM, length) + 4).tolist()
            rows_in.append(sym + [sep])
            rows_out.append(sym[::-1] if multi_token else [4 + (sym[0] - 4 + 1) % N_SYM])
    with DatasetWriter(path, task="toy", config={"multi": multi_token}, seed=seed, vocab=vocab,
                       schema=example_schema()) as w:
        w.write_split("train", [_split_table("toy", "train", rows_in[:30], rows_out[:30], vocab)])
        w.write_split("test_id", [_split_table("toy", "test_id", rows_in[30:], rows_out[30:], vocab)])
        commit(w)
    return path


MODEL = ModelConfig(d_model=32, n_heads=4, n_block=1, loops=2, positions="learned", kernel="torch")


def tcfg(**kw) -> TrainConfig:
    base = dict(steps=8, batch_size=8, lr=3e-3, warmup_steps=2, eval_every=4, log_every=1, eval_examples=0,
                threads=1, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def losses(run: Path) -> list[float]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r["kind"] == "train"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("d") / "toy")


@pytest.fixture(scope="module")
def data_multi(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("d") / "toy-multi", multi_token=True)


def test_schedules_and_loop_sampling():
    c = tcfg(steps=100, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1, lr=1.0)
    assert lr_at(5, c) == pytest.approx(0.5) and lr_at(10, c) == pytest.approx(1.0)
    assert lr_at(100, c) == pytest.approx(0.1) and lr_at(55, c) == pytest.approx(0.55)
    lin = tcfg(steps=100, warmup_steps=0, schedule="linear", min_lr_ratio=0.0, lr=1.0)
    assert lr_at(50, lin) == pytest.approx(0.5)
    p = tcfg(loops_sampling="poisson", loops_mean=4.0, loops_min=2, loops_max=8)
    ts = [sample_loops(p, 1, s) for s in range(400)]
    assert {t for t, _ in ts} <= set(range(2, 9)) and len({t for t, _ in ts}) >= 5
    assert 3.3 < np.mean([t for t, _ in ts]) < 4.7
    assert all(1 <= s < t for t, s in ts)
    assert ts == [sample_loops(p, 1, s) for s in range(400)]  # pure function of (seed, step)
    h = tcfg(loops_sampling="poisson_lognormal", loops_mean=8.0, loops_min=1, loops_max=16)
    assert 6 < np.mean([sample_loops(h, 1, s)[0] for s in range(400)]) < 10
    assert sample_loops(tcfg(), 5, 1)[0] == 5


def test_tiny_model_overfits_to_full_train_accuracy(data, tmp_path):
    run = train(data, tmp_path / "run", MODEL, tcfg(steps=150, lr=1e-2, warmup_steps=10, eval_every=50,
                                                    weight_decay=0.0), progress=False)
    evals = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"eval"' in x]
    assert evals[-1]["acc"]["train"] == 1.0
    assert losses(run)[-1] < 0.05 < losses(run)[0]
    assert (run / "curves.png").stat().st_size > 1000
    model, cfg = ckpt.load_model(run)
    ds = load(data)
    from benchgen.reference_models.data import AnswerFormat, load_split

    assert accuracy(model, load_split(ds, "train", AnswerFormat.from_dict(cfg["answer"])), 2) == 1.0


def test_checkpoint_roundtrip_and_adapter(data, tmp_path):
    from benchgen.registry import get_adapter

    run = train(data, tmp_path / "run", MODEL, tcfg(steps=6), progress=False)
    for name in ("model.safetensors", "config.json", "optimizer.pt", "vocab.json"):
        assert (run / name).is_file()
    ds = load(data)
    examples = ds.table("test_id")
    a1 = get_adapter(f"reference:{run}")
    a2 = get_adapter(f"reference:{run}")
    assert a1.supports_loops and a1.name.startswith("reference:")
    p1, p2 = a1.predict(examples, [1, 2, 3]), a2.predict(examples, [1, 2, 3])
    assert p1.equals(p2)
    assert p1.num_rows == 3 * examples.num_rows
    assert p1.column("id").to_pylist()[:3] == [examples.column("id")[0].as_py()] * 3
    assert p1.column("loops").to_pylist()[:3] == [1, 2, 3]
    # the adapter's answers equal separate per-T argmax runs of the reloaded model
    model, _ = ckpt.load_model(run)
    from benchgen.reference_models.data import AnswerFormat, load_split

    enc = load_split(ds, "test_id", AnswerFormat(1, None, 1))
    n_in = enc.n_in
    x = enc.tokens[:, : int(n_in.max())]
    for T in (1, 2, 3):
        ids = model(x, loops=T, at=n_in - 1).argmax(-1).numpy()
        expect = [ds.vocab.tokens[i] for i in ids]
        assert p1.filter(pa.compute.equal(p1["loops"], T))["prediction"].to_pylist() == expect
    # margin > 0 exactly when the first answer token is right; kl_prev null only at T=1
    right = np.array(p1["prediction"].to_pylist()) == np.repeat(examples["answer"].to_pylist(), 3)
    margin = np.array(p1["margin"].to_pylist())
    assert ((margin > 0) == right).all()
    assert p1["kl_prev"].null_count == examples.num_rows
    assert min(p1["entropy"].to_pylist()) >= 0
    none = a1.predict(examples, None)
    assert none.num_rows == examples.num_rows and none["loops"].null_count == examples.num_rows


def test_multi_token_answers_greedy_decode(data_multi, tmp_path):
    from benchgen.reference_models.adapter import load_adapter

    run = train(data_multi, tmp_path / "run", MODEL, tcfg(steps=200, lr=1e-2, warmup_steps=10,
                                                           eval_every=100, weight_decay=0.0), progress=False)
    cfg = ckpt.read_config(run)
    assert cfg["answer"]["fixed_len"] is None and cfg["answer"]["eos_id"] == 2
    ds = load(data_multi)
    train_rows = ds.table("train")
    preds = load_adapter(str(run)).predict(train_rows, [2])
    evals = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"eval"' in x]
    exact = np.mean(np.array(preds["prediction"].to_pylist()) == np.array(train_rows["answer"].to_pylist()))
    # teacher-forced exact match (training eval) == greedy exact match (adapter) on the same rows
    assert exact == pytest.approx(evals[-1]["acc"]["train"])
    assert exact > 0.8
    lengths = {len(p) for p in preds["prediction"].to_pylist()}
    assert len(lengths) >= 2  # variable-length answers cut at <eos>


def test_resume_continues_the_same_loss_curve(data, tmp_path):
    cfg = tcfg(steps=10, eval_every=5, loops_sampling="uniform", loops_min=1, loops_max=3)
    mc = ModelConfig(**{**MODEL.__dict__, "dropout": 0.1})
    full = train(data, tmp_path / "full", mc, cfg, progress=False)
    part = train(data, tmp_path / "part", mc, cfg, steps=5, progress=False)
    assert len(losses(part)) == 5
    train(data, tmp_path / "part", resume=True, steps=10, progress=False)
    assert losses(part) == pytest.approx(losses(full), rel=1e-6, abs=1e-7)
    assert len(losses(part)) == 10
    with pytest.raises(BenchgenError, match="already exists"):
        train(data, tmp_path / "full", mc, cfg, progress=False)


def test_truncation_and_short_route_options_train(data, tmp_path):
    mc = ModelConfig(**{**MODEL.__dict__, "injection": "add", "conditioning": "loopformer", "loops": 3})
    run = train(data, tmp_path / "run", mc, tcfg(steps=4, backprop_last=1, short_route_weight=0.1,
                                                 label_smoothing=0.1, loops_sampling="uniform", loops_min=2,
                                                 loops_max=4), progress=False)
    ls = losses(run)
    assert len(ls) == 4 and all(np.isfinite(ls))


def test_cli_train(data, tmp_path):
    from click.testing import CliRunner

    from benchgen.cli import main

    out = tmp_path / "cli-run"
    r = CliRunner().invoke(main, ["train", "--data", str(data), "--preset", "cpu-khop-vanilla", "--out", str(out),
                                  "--steps", "3", "--set", "model.d_model=32", "--set", "train.batch_size=8",
                                  "--set", "train.eval_examples=0", "--no-progress"])
    assert r.exit_code == 0, r.output
    saved = json.loads((out / "config.json").read_text())
    assert saved["step"] == 3 and saved["model"]["d_model"] == 32 and saved["preset"] == "cpu-khop-vanilla"
    r = CliRunner().invoke(main, ["train", "--data", str(data), "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "--preset" in r.output
    r = CliRunner().invoke(main, ["train", "--data", str(data), "--preset", "cpu-khop-vanilla", "--out",
                                  str(tmp_path / "y"), "--set", "model.loops=0"])
    assert r.exit_code == 2 and "loops" in r.output


def test_loopformer_short_route_on_the_grid_and_row_loops():
    from benchgen.reference_models.train import sample_row_loops, short_route

    c = tcfg(short_route_weight=0.1)
    for step in range(50):
        S = 1 + step % 7
        r = short_route(c, 8, S, step)
        assert len(r) == S and sum(r) == pytest.approx(1.0)
        assert all(x > 0 and (x * 8) == round(x * 8) for x in r)
    assert short_route(c, 8, 3, 5) == short_route(c, 8, 3, 5)
    p = tcfg(loops_sampling="poisson", loops_mean=8.0, loops_min=1, loops_max=24, loops_per_row=True)
    T = sample_row_loops(p, 8, 3, 4000)
    assert T.min() >= 1 and T.max() <= 24 and 7.6 < float(T.float().mean()) < 8.4
    assert len(set(T[:16].tolist())) > 1  # per sequence, not per batch


def test_parcae_preset_trains_per_row(data, tmp_path):
    mc = ModelConfig(d_model=32, n_heads=4, n_block=1, n_prelude=1, n_coda=1, loops=3, injection="parcae",
                     state_init="noise", exit_proj=True, kernel="torch")
    run = train(data, tmp_path / "p", mc, tcfg(loops_sampling="poisson", loops_mean=3.0, loops_min=1,
                                                 loops_max=5, loops_per_row=True, backprop_last=2), progress=False)
    assert np.isfinite(losses(run)).all()
