"""Evaluation commands: ``evaluate``, ``report`` and ``predict-oracle``.

``evaluate``'s options come in groups (where predictions come from, how a model is run, how
answers are compared, the metric settings, what is written), each turned into the library's
own value (adapter options, :class:`Normalization`, :class:`MetricSettings`) before one call.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from benchgen.cli.common import (
    MAX_SEED,
    check_device,
    check_numbers,
    fail,
    hint,
    leaderboard_hint,
    loops,
    metadata,
    options,
    progress,
    quoted,
    rendering,
    spec_name,
    split_list,
)

MAX_BOOTSTRAP = 100_000

SOURCE = options(
    click.option("--predictions", "predictions", default=None, metavar="FILE",
                 help="predictions file (.parquet, .jsonl or .csv): id, prediction, optional loops, margin, entropy, "
                      "kl_prev"),
    click.option("--model", "model_spec", default=None, metavar="SPEC",
                 help="run a model: hf:LOCAL_DIR, torchscript:FILE.pt, python:MODULE:FN (or FILE.py:FN), "
                      "reference:RUN_DIR, or a plugin scheme; its predictions are written to OUT/predictions.parquet. "
                      "python: FN(examples: pyarrow.Table [id, prompt, input_ids], loops: int | None) -> "
                      "list of answers (str or token ids), or a Table with id, prediction"),
    click.option("--lm-eval-samples", "lm_eval_samples", multiple=True, metavar="DIR_OR_FILE",
                 help="score lm-eval --log_samples output (samples_*.jsonl files or a directory; repeatable)"),
)
MODEL_RUN = options(
    click.option("--loops", "model_loops", default=None, metavar="INTS",
                 help="with --model: loop counts to run, e.g. 1-16 (models with a loop count)"),
    click.option("--batch-size", type=int, default=32, show_default=True, help="with --model: examples per batch"),
    click.option("--limit", type=int, default=None, help="with --model: only the first N examples of each split"),
    click.option("--loop-kwarg", default=None, metavar="NAME",
                 help="with --model hf:/torchscript:: pass the loop count to the model as NAME=T (e.g. num_steps)"),
    click.option("--loop-config", default=None, metavar="NAME",
                 help="with --model hf:: set the model's config field NAME (nested text configs too) to T for each "
                      "loop count, restored after (e.g. loop_num_passes)"),
    click.option("--device", default=None, metavar="cpu|cuda", help="with --model: device to run on [default: cpu]"),
    click.option("--trust-remote-code", is_flag=True,
                 help="with --model hf:: allow model code shipped in the local checkpoint directory"),
    click.option("--progress/--no-progress", "show_progress", default=None,
                 help="with --model: progress bars (also transformers' loading bars) [default: only when stderr "
                      "is a terminal]"),
)
SCORING = options(
    click.option("--splits", multiple=True, metavar="A,B",
                 help="splits to score [default: every split with predictions]"),
    click.option("--allow-missing", is_flag=True, help="score what is predicted; report coverage instead of failing"),
    click.option("--casefold", is_flag=True, help="compare answers case-insensitively"),
    click.option("--no-strip", is_flag=True, help="do not strip surrounding whitespace before comparing"),
)
METRICS = options(
    click.option("--tau", type=float, default=0.9, show_default=True,
                 help="accuracy threshold (horizon, loops needed)"),
    click.option("--delta", type=float, default=0.05, show_default=True, help="overthinking onset tolerance"),
    click.option("--bootstrap", type=int, default=1000, show_default=True, help="bootstrap resamples"),
    click.option("--bootstrap-seed", type=int, default=0, show_default=True,
                 help="seed of the bootstrap resampling (the data's seed is the dataset's own)"),
    click.option("--halt-kl", type=float, default=0.01, show_default=True,
                 help="halting rule: KL(p_t||p_t-1) below this"),
    click.option("--halt-entropy", type=float, default=3.0, show_default=True,
                 help="halting rule: entropy below this"),
    click.option("--primary-loops", type=int, default=None,
                 help="loops for per-split/depth metrics [default: largest]"),
    click.option("--exit-rule", "exit_rules", multiple=True, metavar="NAME[:K=V,...]",
                 help="exit rule to compare on a loop sweep, with its parameters and a threshold sweep (repeatable): "
                      "kl-entropy, kl, minp-kl, entropy, entropy-diff, latent-diff, stable-argmax, confidence, fixed, "
                      "or a plugin's [default: every rule at its default thresholds]"),
)
OUTPUT = options(
    click.option("--model-name", default=None, help="model name recorded in results.json [default: file stem]"),
    click.option("--model-meta", multiple=True, metavar="KEY=VALUE", help="model metadata to record (repeatable)"),
    click.option("--out", required=True, help="output directory (results.json, report.md, plots/)"),
    click.option("--overwrite", is_flag=True, help="replace an existing --out directory"),
    click.option("--html", is_flag=True, help="also write a self-contained report.html"),
    click.option("--no-plots", is_flag=True, help="skip the PNG plots"),
)


def renamed(old: str, new: str):
    """A hidden flag that was renamed: one line naming the new flag (one meaning per name)."""
    def refuse(ctx, _param, value):
        if value is not None:
            fail(f"{old} was renamed to {new} ({old} is only ever the data or training seed)")
    return click.option(old, "renamed_" + old.strip("-").replace("-", "_"), default=None, hidden=True,
                        expose_value=False, callback=refuse)


def _settings(o: dict):
    """MetricSettings from the metric options (numbers checked first, one line each)."""
    from benchgen.evaluators import MetricSettings

    check_numbers({"--tau": o["tau"], "--delta": o["delta"], "--halt-kl": o["halt_kl"],
                   "--halt-entropy": o["halt_entropy"]},
                  {"--bootstrap": (o["bootstrap"], 0, MAX_BOOTSTRAP), "--bootstrap-seed": (o["bootstrap_seed"], 0, MAX_SEED),
                   "--batch-size": (o["batch_size"], 1, 1 << 16), "--limit": (o["limit"], 1, 1 << 40),
                   "--primary-loops": (o["primary_loops"], 1, 1 << 16)})
    rules = tuple(o["exit_rules"]) or None
    if rules:
        from benchgen.evaluators.compute_accuracy import selected_rules

        selected_rules(rules)  # unknown rules and bad thresholds: one line before any work
    return MetricSettings(tau=o["tau"], delta=o["delta"], bootstrap=o["bootstrap"], bootstrap_seed=o["bootstrap_seed"],
                          halt_kl=o["halt_kl"], halt_entropy=o["halt_entropy"], primary_loops=o["primary_loops"],
                          exit_rules=rules)


def _quiet_hf() -> None:
    """--no-progress: silence Hugging Face's own bars (checkpoint loading, hub) as well as ours."""
    import os

    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    if "transformers" in sys.modules:  # already imported: switch its bars off directly too
        sys.modules["transformers"].utils.logging.disable_progress_bar()


def _print_results(results, outdir, dataset_dir: str) -> None:
    """The summary lines, what was written (plots/ only when made), and what to run next."""
    from benchgen.evaluators.report.render import summary_lines

    for line in summary_lines(results):
        click.echo(line)
    made = sorted(p.name + ("/" if p.is_dir() else "") for p in Path(outdir).iterdir() if not p.name.startswith("."))
    click.echo(f"wrote {outdir}: {', '.join(made)}")
    floors = Path("floors") / Path(dataset_dir.rstrip("/")).name
    results = f"{outdir}/results.json"
    if any(floors.glob("*/results.json")):  # floor rows already measured for this dataset
        hint(leaderboard_hint([results, str(floors)]))
    elif not floors.exists():
        hint(f"benchgen baselines {quoted(dataset_dir)} --out {floors}", leaderboard_hint([results, str(floors)]))
    else:  # something else lives there: leave the floors out
        hint(leaderboard_hint([results]))


def _check_sources(o: dict) -> None:
    """Exactly one source; model-run options only with --model."""
    sources = sum(x is not None and x != () for x in (o["predictions"], o["model_spec"], o["lm_eval_samples"] or None))
    if sources != 1:
        fail("evaluate: give exactly one of --predictions FILE, --model SPEC or --lm-eval-samples DIR")
    if o["model_spec"] is None and (o["model_loops"] or o["limit"] or o["loop_kwarg"] or o["loop_config"]
                                    or o["device"] or o["trust_remote_code"]):
        fail("evaluate: --loops, --limit, --loop-kwarg, --loop-config, --device and --trust-remote-code need "
             "--model SPEC")
    if o["loop_kwarg"] and o["loop_config"]:
        fail("--loop-config and --loop-kwarg: give one loop knob, not both")
    if o["exit_rules"] and o["model_spec"] is not None and len(loops(o["model_loops"]) or []) < 2:
        fail("--exit-rule: needs a loop sweep (--loops with two or more loop counts)")


def _predict(dataset_dir: str, o: dict):
    """Run the model (or read lm-eval samples): dataset, predictions, splits to score, model metadata."""
    from benchgen.evaluators.models.run import predict_for_evaluation

    show = progress(o["show_progress"])
    if not show:
        _quiet_hf()
    return predict_for_evaluation(
        dataset_dir, model=o["model_spec"], lm_eval_samples=o["lm_eval_samples"], splits=split_list(o["splits"]),
        loops=loops(o["model_loops"]), batch_size=o["batch_size"], limit=o["limit"], progress=show,
        device=o["device"], loop_kwarg=o["loop_kwarg"], loop_config=o["loop_config"],
        trust_remote_code=o["trust_remote_code"])


@click.command("evaluate")
@click.argument("dataset_dir")
@SOURCE
@MODEL_RUN
@SCORING
@METRICS
@OUTPUT
@renamed("--seed", "--bootstrap-seed")
def evaluate_cmd(dataset_dir: str, **o) -> None:
    """Score predictions per split, depth and loops; write results.json, report.md and plots.

    \b
    Examples:
      benchgen predict-oracle data/khop --noise 0.1 --loops 1-8 --out preds.parquet
      benchgen evaluate data/khop --predictions preds.parquet --model-name oracle --out eval/oracle
      benchgen evaluate data/khop --model hf:./ckpt --batch-size 64 --out eval/ckpt
      benchgen evaluate data/khop --model hf:./huginn --loop-kwarg num_steps --loops 1-16 --out eval/h
      benchgen evaluate data/khop --model hf:./inkling --loop-config loop_num_passes --loops 1-8 \
        --exit-rule kl --exit-rule stable-argmax:k=2 --out eval/ink
      benchgen evaluate data/khop --lm-eval-samples lm-out/ --out eval/lm
    """
    from benchgen.atomic import check_target
    from benchgen.evaluators import Normalization, evaluate, write_outputs

    _check_sources(o)
    settings = _settings(o)
    check_device(o["device"], allow_auto=False)
    norm = Normalization(strip=not o["no_strip"], casefold=o["casefold"])
    out, meta = o["out"], metadata(o["model_meta"])
    check_target(out, o["overwrite"], kind="results")  # fail before scoring or running a model
    if o["predictions"] is not None:
        results = evaluate(dataset_dir, o["predictions"], splits=split_list(o["splits"]),
                           allow_missing=o["allow_missing"], normalization=norm, settings=settings,
                           model_name=o["model_name"], model_metadata=meta)
        write_outputs(results, out, html=o["html"], plots=not o["no_plots"], overwrite=o["overwrite"])
        _print_results(results, out, dataset_dir)
        return
    ds, preds, scored, run_meta = _predict(dataset_dir, o)
    found_name = run_meta.pop("model_name", None)  # lm-eval: from its results_*.json
    name = o["model_name"] or found_name or (spec_name(o["model_spec"]) if o["model_spec"] else "lm-eval")
    results = evaluate(ds, preds, splits=scored, allow_missing=o["allow_missing"] or o["limit"] is not None,
                       normalization=norm, settings=settings, model_name=name, model_metadata={**run_meta, **meta})
    write_outputs(results, out, html=o["html"], plots=not o["no_plots"], overwrite=o["overwrite"], predictions=preds)
    click.echo(f"wrote {Path(out) / 'predictions.parquet'} (re-score with --predictions)")
    _print_results(results, out, dataset_dir)


@click.command("report")
@click.argument("results_json")
@click.option("--out", default=None, help="directory for report.md / plots [default: beside RESULTS_JSON]")
@click.option("--html", is_flag=True, help="also write a self-contained report.html")
@click.option("--no-plots", is_flag=True, help="skip the PNG plots")
def report_cmd(results_json, out, html, no_plots) -> None:
    """Re-render report.md, plots (and report.html) from a results.json.

    \b
    Example:
      benchgen report eval/oracle/results.json --html
    """
    from benchgen.evaluators import rerender

    with rendering(results_json):
        paths = rerender(results_json, out, html=html, plots=not no_plots)
    for path in paths:
        click.echo(f"wrote {path}")


@click.command("predict-oracle")
@click.argument("dataset_dir")
@click.option("--out", required=True, metavar="FILE", help="predictions file; format by extension (.parquet/.jsonl/.csv)")
@click.option("--noise", type=float, default=0.0, show_default=True, help="fraction of rows given a wrong answer")
@click.option("--noise-seed", type=int, default=0, show_default=True, help="seed for choosing the corrupted rows")
@click.option("--loops", "loop_text", default=None, metavar="INTS",
              help="emit a loops sweep, e.g. 1-8 (one row per example and loops)")
@click.option("--splits", multiple=True, metavar="A,B", help="splits to predict [default: all but train]")
@click.option("--token-ids", is_flag=True, help="predict target token ids instead of answer text")
@click.option("--overwrite", is_flag=True, help="replace an existing --out file")
@renamed("--seed", "--noise-seed")
def predict_oracle_cmd(dataset_dir, out, noise, noise_seed, loop_text, splits, token_ids, overwrite) -> None:
    """Write correct (or, with --noise, partly corrupted) predictions for a dataset.

    \b
    Examples:
      benchgen predict-oracle data/khop --out oracle.parquet
      benchgen predict-oracle data/khop --noise 0.2 --loops 1-8 --out noisy.jsonl
    """
    from benchgen.atomic import safe_out_path
    from benchgen.dataset import load
    from benchgen.evaluators import oracle_predictions, write_predictions
    from benchgen.evaluators.scoring.predictions import file_format

    check_numbers({"--noise": noise}, {"--noise-seed": (noise_seed, 0, MAX_SEED)})
    out = str(safe_out_path(out))
    file_format(out)
    if Path(out).exists() and not overwrite:
        fail(f"--out {out}: already exists (pass --overwrite to replace it)")
    if Path(out).is_dir():
        fail(f"--out {out}: is a directory (expected a predictions file)")
    ds = load(dataset_dir)
    table = oracle_predictions(ds, splits=split_list(splits), noise=noise, noise_seed=noise_seed,
                               loops=loops(loop_text), token_ids=token_ids)
    write_predictions(table, out, fingerprint=ds.fingerprint, overwrite=overwrite)
    click.echo(f"wrote {table.num_rows} predictions to {out}")
