"""benchgen command line: thin click front end (parse, call the library, print).

Examples::

    benchgen tasks
    benchgen generate khop --preset grokked-composition --out data/grokked
    benchgen generate khop --train-hops 2-4 --test-hops 5,6 --out data/khop
    benchgen info data/khop
    benchgen audit data/khop
"""

from __future__ import annotations

import dataclasses
import sys

import click

from benchgen.errors import BenchgenError


def _fail(message: str) -> None:
    """Print one clear error line and exit non-zero."""
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


class BenchgenGroup(click.Group):
    """Turns library errors into one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except BenchgenError as e:
            _fail(str(e))


@click.group(cls=BenchgenGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="benchgen")
def main() -> None:
    """benchgen: datasets and evaluation for implicit multi-step reasoning.

    \b
    Generate a dataset, check it, look at it:
      benchgen generate khop --preset khop-small --out data/khop-small
      benchgen audit data/khop-small
      benchgen info data/khop-small
    """


# --- tasks / generate -----------------------------------------------------------------------------
@main.command("tasks")
def tasks_cmd() -> None:
    """List tasks and their presets.

    \b
    Example:
      benchgen tasks
    """
    from benchgen import registry

    for name in registry.task_names():
        mod = registry.get_task(name)
        click.echo(f"{name}: {mod.DESCRIPTION}")
        for preset, spec in mod.PRESETS.items():
            click.echo(f"  --preset {preset}: {spec['description']}")


def _default_text(f: dataclasses.Field) -> str:
    from benchgen.config import format_int_set

    if f.default is dataclasses.MISSING:
        return ""
    d = f.default
    if isinstance(d, tuple) and d and isinstance(d[0], tuple):
        return ",".join(f"{a}x{b}" for a, b in d) or "none"
    if isinstance(d, tuple):
        return format_int_set(d) if d else "none"
    return "none" if d is None else str(d)


def _option_for(f: dataclasses.Field) -> click.Option:
    """A click option for one config dataclass field (default None: the preset/dataclass decides)."""
    from benchgen.config import field_help, field_kind

    kind, extra = field_kind(f)
    flag = "--" + f.name.replace("_", "-")
    help_text = f"{field_help(f)}  [default: {_default_text(f)}]"
    if kind == "bool":
        return click.Option([f"{flag}/--no-{f.name.replace('_', '-')}", f.name], default=None, help=help_text)
    if kind == "choice":
        return click.Option([flag, f.name], type=click.Choice([str(c) for c in extra[0]]), default=None, help=help_text)
    types = {"int": int, "float": float}
    metavar = {"intset": "INTS", "cells": "DxW,...", "int": "INT", "float": "FLOAT"}.get(kind, "TEXT")
    return click.Option([flag, f.name], type=types.get(kind, str), default=None, metavar=metavar, help=help_text)


def _task_command(name: str) -> click.Command:
    from benchgen import registry

    mod = registry.get_task(name)

    def callback(preset, out, overwrite, progress, **options):
        from benchgen.config import build_config

        cfg = build_config(mod.CONFIG, mod.PRESETS, preset, options)
        path = mod.generate(cfg, out, overwrite=overwrite, progress=progress)
        _print_info(path)

    params = [
        click.Option(["--preset"], type=click.Choice(list(mod.PRESETS)), default=None,
                     help="start from a published setting; options given next override it"),
        click.Option(["--out"], required=True, help="output dataset directory"),
        click.Option(["--overwrite"], is_flag=True, help="replace an existing dataset at --out"),
        click.Option(["--progress/--no-progress"], default=True, help="show a progress bar"),
        *[_option_for(f) for f in dataclasses.fields(mod.CONFIG)],
    ]
    presets = ", ".join(mod.PRESETS)
    return click.Command(
        name, callback=callback, params=params,
        help=f"{mod.DESCRIPTION}.\n\nPresets: {presets}.\n\n\b\nExamples:\n"
             f"  benchgen generate {name} --out data/{name}\n"
             f"  benchgen generate {name} --preset {next(iter(mod.PRESETS))} --out data/{name}-preset",
        short_help=mod.DESCRIPTION)


class TaskGroup(click.Group):
    """`generate` subcommands, one per registered task, built from the task's config dataclass."""

    def list_commands(self, ctx):
        from benchgen import registry

        return registry.task_names()

    def get_command(self, ctx, name):
        from benchgen import registry

        return _task_command(name) if name in registry.task_names() else None


@main.group("generate", cls=TaskGroup)
def generate() -> None:
    """Generate a dataset for a task (see `benchgen tasks`).

    \b
    Examples:
      benchgen generate khop --out data/khop
      benchgen generate khop --preset ltg-depth --out data/ltg-depth
      benchgen generate khop --train-hops 2-5 --test-hops 6,8 --out data/k
    """


def _print_info(path) -> None:
    from benchgen.dataset import load

    ds = load(path)
    click.echo(f"{ds.path}  task={ds.task}  seed={ds.manifest.get('seed')}  fingerprint={ds.fingerprint[:16]}")
    click.echo(f"{'split':<16} {'rows':>10}  depths (depth: rows)")
    for split, info in ds.manifest["splits"].items():
        depths = ", ".join(f"{d}: {n}" for d, n in info["depths"].items())
        click.echo(f"{split:<16} {info['rows']:>10}  {depths}")


@main.command("info")
@click.argument("dataset_dir")
def info(dataset_dir: str) -> None:
    """Counts per split and depth of a dataset.

    \b
    Example:
      benchgen info data/khop
    """
    _print_info(dataset_dir)


@main.command("audit")
@click.argument("dataset_dir")
def audit_cmd(dataset_dir: str) -> None:
    """Re-derive every split guarantee from the written files; exit 1 on any violation.

    Uses an independent route (e.g. a networkx traversal of kg.parquet for khop).

    \b
    Example:
      benchgen audit data/khop
    """
    from benchgen.audit import audit
    from benchgen.dataset import load

    problems = audit(load(dataset_dir))
    if problems:
        for p in problems:
            click.echo(f"VIOLATION: {p}", err=True)
        click.echo(f"audit failed: {len(problems)} violation(s)", err=True)
        sys.exit(1)
    click.echo("audit passed: every split guarantee holds")


# --- evaluate / report / predict-oracle (evaluators) ----------------------------------------------
def _split_list(values: tuple[str, ...]) -> list[str] | None:
    """``--splits a,b --splits c`` -> ["a", "b", "c"] (None when not given)."""
    names = [s for v in values for s in v.replace(" ", "").split(",") if s]
    return names or None


def _metadata(pairs: tuple[str, ...]) -> dict:
    meta = {}
    for p in pairs:
        key, sep, value = p.partition("=")
        if not sep or not key:
            _fail(f"--model-meta {p!r}: expected KEY=VALUE")
        meta[key] = value
    return meta


def _print_results(results, outdir) -> None:
    from benchgen.evaluators.report import summary_lines

    for line in summary_lines(results):
        click.echo(line)
    click.echo(f"wrote {outdir}/results.json, report.md and plots/")


@main.command("evaluate")
@click.argument("dataset_dir")
@click.option("--predictions", "predictions", default=None, metavar="FILE",
              help="predictions file (.parquet, .jsonl or .csv): id, prediction, optional loops, margin, entropy, kl_prev")
@click.option("--model", "model_spec", default=None, metavar="SPEC",
              help="run a model: hf:LOCAL_DIR, torchscript:FILE.pt, python:MODULE:FN (or FILE.py:FN), "
                   "reference:RUN_DIR; its predictions are written to OUT/predictions.parquet")
@click.option("--lm-eval-samples", "lm_eval_samples", multiple=True, metavar="DIR_OR_FILE",
              help="score lm-eval --log_samples output (samples_*.jsonl files or a directory; repeatable)")
@click.option("--loops", "model_loops", default=None, metavar="INTS",
              help="with --model: loop counts to run, e.g. 1-16 (models with a loop count)")
@click.option("--batch-size", type=int, default=32, show_default=True, help="with --model: examples per batch")
@click.option("--limit", type=int, default=None, help="with --model: only the first N examples of each split")
@click.option("--loop-kwarg", default=None, metavar="NAME",
              help="with --model hf:/torchscript:: pass the loop count to the model as NAME=T (e.g. num_steps)")
@click.option("--device", default=None, metavar="cpu|cuda", help="with --model: device to run on [default: cpu]")
@click.option("--trust-remote-code", is_flag=True,
              help="with --model hf:: allow model code shipped in the local checkpoint directory")
@click.option("--progress/--no-progress", default=True, help="with --model: show a progress bar")
@click.option("--model-name", default=None, help="model name recorded in results.json [default: file stem]")
@click.option("--model-meta", multiple=True, metavar="KEY=VALUE", help="model metadata to record (repeatable)")
@click.option("--splits", multiple=True, metavar="A,B", help="splits to score [default: every split with predictions]")
@click.option("--allow-missing", is_flag=True, help="score what is predicted; report coverage instead of failing")
@click.option("--casefold", is_flag=True, help="compare answers case-insensitively")
@click.option("--no-strip", is_flag=True, help="do not strip surrounding whitespace before comparing")
@click.option("--tau", type=float, default=0.9, show_default=True, help="accuracy threshold (horizon, loops needed)")
@click.option("--delta", type=float, default=0.05, show_default=True, help="overthinking onset tolerance")
@click.option("--bootstrap", type=int, default=1000, show_default=True, help="bootstrap resamples")
@click.option("--seed", type=int, default=0, show_default=True, help="bootstrap seed")
@click.option("--halt-kl", type=float, default=0.01, show_default=True, help="halting rule: KL(p_t||p_t-1) below this")
@click.option("--halt-entropy", type=float, default=3.0, show_default=True, help="halting rule: entropy below this")
@click.option("--primary-loops", type=int, default=None, help="loops for per-split/depth metrics [default: largest]")
@click.option("--out", required=True, help="output directory (results.json, report.md, plots/)")
@click.option("--overwrite", is_flag=True, help="replace an existing --out directory")
@click.option("--html", is_flag=True, help="also write a self-contained report.html")
@click.option("--no-plots", is_flag=True, help="skip the PNG plots")
def evaluate_cmd(dataset_dir, predictions, model_spec, lm_eval_samples, model_loops, batch_size, limit, loop_kwarg,
                 device, trust_remote_code, progress, model_name, model_meta, splits, allow_missing, casefold,
                 no_strip, tau, delta, bootstrap, seed, halt_kl, halt_entropy, primary_loops, out, overwrite, html,
                 no_plots) -> None:
    """Score predictions per split, depth and loops; write results.json, report.md and plots.

    \b
    Examples:
      benchgen predict-oracle data/khop --noise 0.1 --loops 1-8 --out preds.parquet
      benchgen evaluate data/khop --predictions preds.parquet --model-name oracle --out eval/oracle
      benchgen evaluate data/khop --model hf:./ckpt --batch-size 64 --out eval/ckpt
      benchgen evaluate data/khop --model hf:./huginn --loop-kwarg num_steps --loops 1-16 --out eval/h
      benchgen evaluate data/khop --lm-eval-samples lm-out/ --out eval/lm
    """
    from pathlib import Path

    from benchgen.evaluators import MetricSettings, Normalization, evaluate, write_outputs, write_predictions

    sources = sum(x is not None and x != () for x in (predictions, model_spec, lm_eval_samples or None))
    if sources != 1:
        _fail("evaluate: give exactly one of --predictions FILE, --model SPEC or --lm-eval-samples DIR")
    if model_spec is None and (model_loops or limit or loop_kwarg or device or trust_remote_code):
        _fail("evaluate: --loops, --limit, --loop-kwarg, --device and --trust-remote-code need --model SPEC")
    settings = MetricSettings(tau=tau, delta=delta, bootstrap=bootstrap, seed=seed, halt_kl=halt_kl,
                              halt_entropy=halt_entropy, primary_loops=primary_loops)
    norm = Normalization(strip=not no_strip, casefold=casefold)
    if predictions is not None:
        results = evaluate(dataset_dir, predictions, splits=_split_list(splits), allow_missing=allow_missing,
                           normalization=norm, settings=settings, model_name=model_name,
                           model_metadata=_metadata(model_meta))
        write_outputs(results, out, html=html, plots=not no_plots, overwrite=overwrite)
        _print_results(results, out)
        return
    from benchgen.config import parse_int_set
    from benchgen.dataset import check_target
    from benchgen.evaluators.run_model import predict_for_evaluation

    check_target(out, overwrite)  # fail before running a model
    ds, preds, scored, meta = predict_for_evaluation(
        dataset_dir, model=model_spec, lm_eval_samples=lm_eval_samples, splits=_split_list(splits),
        loops=list(parse_int_set(model_loops, "loops")) if model_loops else None, batch_size=batch_size,
        limit=limit, progress=progress, device=device, loop_kwarg=loop_kwarg,
        trust_remote_code=trust_remote_code)
    name = model_name or (model_spec if model_spec else "lm-eval")
    results = evaluate(ds, preds, splits=scored, allow_missing=allow_missing or limit is not None,
                       normalization=norm, settings=settings, model_name=name,
                       model_metadata={**meta, **_metadata(model_meta)})
    write_outputs(results, out, html=html, plots=not no_plots, overwrite=overwrite)
    write_predictions(preds, Path(out) / "predictions.parquet")
    click.echo(f"wrote {Path(out) / 'predictions.parquet'} (re-score with --predictions)")
    _print_results(results, out)


@main.command("report")
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

    for path in rerender(results_json, out, html=html, plots=not no_plots):
        click.echo(f"wrote {path}")


@main.command("predict-oracle")
@click.argument("dataset_dir")
@click.option("--out", required=True, metavar="FILE", help="predictions file; format by extension (.parquet/.jsonl/.csv)")
@click.option("--noise", type=float, default=0.0, show_default=True, help="fraction of rows given a wrong answer")
@click.option("--seed", type=int, default=0, show_default=True, help="seed for choosing the corrupted rows")
@click.option("--loops", default=None, metavar="INTS", help="emit a loops sweep, e.g. 1-8 (one row per example and loops)")
@click.option("--splits", multiple=True, metavar="A,B", help="splits to predict [default: all but train]")
@click.option("--token-ids", is_flag=True, help="predict target token ids instead of answer text")
@click.option("--overwrite", is_flag=True, help="replace an existing --out file")
def predict_oracle_cmd(dataset_dir, out, noise, seed, loops, splits, token_ids, overwrite) -> None:
    """Write correct (or, with --noise, partly corrupted) predictions for a dataset.

    \b
    Examples:
      benchgen predict-oracle data/khop --out oracle.parquet
      benchgen predict-oracle data/khop --noise 0.2 --loops 1-8 --out noisy.jsonl
    """
    from pathlib import Path

    from benchgen.config import parse_int_set
    from benchgen.evaluators import oracle_predictions, write_predictions

    if Path(out).exists() and not overwrite:
        _fail(f"--out {out}: already exists (pass --overwrite to replace it)")
    table = oracle_predictions(dataset_dir, splits=_split_list(splits), noise=noise, seed=seed,
                               loops=list(parse_int_set(loops, "loops")) if loops else None, token_ids=token_ids)
    write_predictions(table, out)
    click.echo(f"wrote {table.num_rows} predictions to {out}")


# --- train (reference looped transformers) --------------------------------------------------------
def _list_train_presets(ctx: click.Context, _param, value: bool) -> None:
    if value:
        from benchgen.reference_models.config import PRESETS

        for name, spec in PRESETS.items():
            click.echo(f"{name}: {spec['description']}")
        ctx.exit()


@main.command("train")
@click.option("--data", "data", required=True, help="benchgen dataset directory to train on")
@click.option("--preset", default=None, help="named model+train setting (see --list-presets)")
@click.option("--config", "config_file", default=None, help='JSON file {"model": {...}, "train": {...}}')
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="override one field, e.g. --set model.loops=8 --set train.lr=3e-4 (repeatable)")
@click.option("--out", required=True, help="run directory (checkpoint, metrics.jsonl, curves.png)")
@click.option("--steps", type=int, default=None, help="optimizer steps (overrides the preset; extends a --resume)")
@click.option("--seed", type=int, default=None, help="seed for init, batches and loop sampling")
@click.option("--device", default=None, help="auto, cpu, cuda or cuda:N")
@click.option("--threads", type=int, default=None, help="torch CPU threads (0: torch default)")
@click.option("--resume", is_flag=True, help="continue the run in --out from its last checkpoint")
@click.option("--overwrite", is_flag=True, help="replace an existing run directory")
@click.option("--progress/--no-progress", default=True, help="show a progress bar")
@click.option("--list-presets", is_flag=True, is_eager=True, expose_value=False, callback=_list_train_presets,
              help="list training presets and exit")
def train_cmd(data, preset, config_file, overrides, out, steps, seed, device, threads, resume, overwrite, progress):
    """Train a reference looped transformer (torchrun for multi-GPU / multi-process DDP).

    \b
    Examples:
      benchgen train --data data/khop-small --preset cpu-khop-looped --out runs/looped
      benchgen train --data data/khop-small --preset cpu-khop-vanilla --out runs/vanilla --set train.steps=500
      benchgen train --data data/khop-small --out runs/looped --resume --steps 6000
      torchrun --nproc_per_node 2 -m benchgen train --data DIR --preset ltg-depth --out runs/ltg
    """
    from benchgen.reference_models.config import resolve
    from benchgen.reference_models.train import train

    extra = [f"train.{k}={v}" for k, v in (("seed", seed), ("device", device), ("threads", threads))
             if v is not None]
    model_cfg = train_cfg = None
    if not resume:
        if preset is None and config_file is None:
            _fail("train: give --preset NAME or --config FILE (or --resume)")
        model_cfg, train_cfg = resolve(preset, config_file, [*overrides, *extra])
    elif preset or config_file or overrides or extra:
        _fail("--resume continues with the run's saved config: drop --preset/--config/--set/--seed/--device/--threads")
    run = train(data, out, model_cfg, train_cfg, resume=resume, overwrite=overwrite, steps=steps,
                progress=progress, preset=preset)
    click.echo(f"run saved to {run}")


# --- export / leaderboard (external models, lm-eval) ------------------------------------------------
@main.group("export")
def export_group() -> None:
    """Export a dataset to other evaluation tools.

    \b
    Example:
      benchgen export lm-eval data/khop --out tasks/khop
    """


@export_group.command("lm-eval")
@click.argument("dataset_dir")
@click.option("--out", required=True, metavar="TASKDIR", help="directory for the lm-eval task YAMLs")
@click.option("--name", default=None, help="task name suffix: tasks are benchgen_<name>_* [default: dataset dir name]")
@click.option("--splits", multiple=True, metavar="A,B", help="splits to export [default: all but train]")
@click.option("--max-gen-toks", type=int, default=None, help="generation budget [default: longest answer chars + 8]")
@click.option("--overwrite", is_flag=True, help="replace an existing --out directory")
def export_lm_eval_cmd(dataset_dir, out, name, splits, max_gen_toks, overwrite) -> None:
    """Write lm-evaluation-harness tasks: one per split and depth, a group per split, one group overall.

    Tasks read the parquet shards by absolute path (generate_until, exact match). Score the
    logged samples per depth with `benchgen evaluate DIR --lm-eval-samples OUT`.

    \b
    Example:
      benchgen export lm-eval data/khop --out tasks/khop
      lm_eval --model hf --model_args pretrained=./ckpt --include_path tasks/khop \\
          --tasks benchgen_khop --log_samples --output_path lm-out
      benchgen evaluate data/khop --lm-eval-samples lm-out --out eval/lm
    """
    from benchgen.dataset import load
    from benchgen.evaluators.lm_eval import export_lm_eval

    info = export_lm_eval(load(dataset_dir), out, name=name, splits=_split_list(splits),
                          max_gen_toks=max_gen_toks, overwrite=overwrite)
    click.echo(f"wrote {info['tasks']} task(s) in {len(info['split_groups'])} split group(s) to {info['path']}")
    click.echo(f"run: lm_eval --include_path {info['path']} --tasks {info['group']} --log_samples --output_path OUT ...")


@main.command("leaderboard")
@click.argument("results", nargs=-1)
@click.option("--out", "outs", multiple=True, required=True, metavar="FILE",
              help="board file; format by extension: .md, .html (sortable table + depth plot) or .csv (repeatable)")
@click.option("--baseline", "baselines", multiple=True, metavar="RESULTS_JSON",
              help="results to show as baseline rows (e.g. reference models; repeatable)")
@click.option("--sort", type=click.Choice(["mean", "id", "systematic", "depth", "horizon", "drop"]),
              default="mean", show_default=True,
              help="rank by: mean of ID/systematic/extrapolation accuracy, one of them, horizon, or smallest drop")
def leaderboard_cmd(results, outs, baselines, sort) -> None:
    """Rank models evaluated on one dataset (refuses results whose dataset fingerprints differ).

    RESULTS are results.json files or the directories holding them.

    \b
    Example:
      benchgen leaderboard eval/*/results.json --baseline ref/results.json --out board.html --out board.md
    """
    from benchgen.evaluators.leaderboard import leaderboard

    rows = leaderboard(list(results), list(outs), baselines=list(baselines), sort=sort)
    for r in rows:
        click.echo(f"{r.rank:>3}. {r.model}{' (baseline)' if r.baseline else ''}")
    for o in outs:
        click.echo(f"wrote {o}")


if __name__ == "__main__":
    main()
