"""Sharing commands: ``export lm-eval``, ``baselines`` (floor rows) and ``leaderboard``."""

from __future__ import annotations

import click

from benchgen.cli.common import echo_json, hint, rendering, split_list


@click.group("export")
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
@click.option("--num-fewshot", type=click.IntRange(min=0), default=0, show_default=True,
              help="default shots per prompt, drawn from train (lm_eval --num_fewshot overrides it)")
@click.option("--hub-dataset", default=None, metavar="ID",
              help="read the data from this Hub dataset (user/name, pushed from DATASET_DIR) instead of local files")
@click.option("--overwrite", is_flag=True, help="replace an existing --out directory")
def export_lm_eval_cmd(dataset_dir, out, name, splits, max_gen_toks, num_fewshot, hub_dataset, overwrite) -> None:
    """Write lm-evaluation-harness tasks: one per split and depth, a group per split, one group overall.

    Tasks read the parquet shards by paths relative to TASKDIR (or --hub-dataset); generate_until,
    exact match; TASKDIR/README.md has the exact commands. Score the logged samples per depth with
    `benchgen evaluate DIR --lm-eval-samples OUT` (model name and args come from lm-eval's results file).

    \b
    Example:
      benchgen export lm-eval data/khop --out tasks/khop
      lm_eval --model hf --model_args pretrained=./ckpt --include_path tasks/khop \\
          --tasks benchgen_khop --log_samples --output_path lm-out
      benchgen evaluate data/khop --lm-eval-samples lm-out --out eval/lm
    """
    from benchgen.dataset import load
    from benchgen.evaluators.lm_eval import export_lm_eval

    info = export_lm_eval(load(dataset_dir), out, name=name, splits=split_list(splits),
                          max_gen_toks=max_gen_toks, overwrite=overwrite, num_fewshot=num_fewshot,
                          hub_dataset=hub_dataset)
    click.echo(f"wrote {info['tasks']} task(s) in {len(info['split_groups'])} split group(s) to {info['path']}")
    hint(f"lm_eval --model hf --model_args pretrained=PATH --include_path {info['path']} --tasks {info['group']} "
          "--log_samples --output_path lm-out", f"benchgen evaluate {dataset_dir} --lm-eval-samples lm-out --out eval/NAME")


@click.command("baselines")
@click.argument("dataset_dir")
@click.option("--out", required=True, metavar="OUTDIR", help="directory for OUTDIR/<baseline>/results.json and summary")
@click.option("--only", multiple=True, metavar="A,B", help="run only these baselines [default: all of the task's]")
@click.option("--splits", multiple=True, metavar="A,B", help="splits to score [default: all but train]")
@click.option("--plots", is_flag=True, help="also draw each baseline's report plots (slower)")
@click.option("--bootstrap", type=int, default=200, show_default=True, help="bootstrap resamples per baseline")
@click.option("--overwrite", is_flag=True, help="replace an existing --out directory")
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
def baselines_cmd(dataset_dir, out, only, splits, plots, bootstrap, overwrite, as_json) -> None:
    """Score the task's non-reasoning baselines (fitted on train) like any model: floor rows.

    Writes OUTDIR/<baseline>/results.json (+ report.md, predictions.parquet) and
    OUTDIR/summary.json / summary.md: per split and depth, chance, the best shortcut and (p-hop)
    the best partial-depth line (the answer j hops short of p: partial reasoning, not a shortcut).

    \b
    Examples:
      benchgen baselines data/khop-small --out floors/khop-small
      benchgen baselines data/phop --only one_hop,positional_probe --out floors/phop
      benchgen leaderboard eval/*/results.json floors/khop-small --out board.md
    """
    from benchgen.pipeline.baselines import best_text, run_baselines

    run = run_baselines(dataset_dir, out, only=split_list(only), splits=split_list(splits),
                        overwrite=overwrite, plots=plots, bootstrap=bootstrap)
    if as_json:
        echo_json({"out": str(run.out), "seconds": round(run.seconds, 2), **run.summary})
        return
    partial = "partial_note" in run.summary
    click.echo(f"{'split':<16} {'depth':>5} {'n':>6} {'chance':>7}  best shortcut baseline (accuracy [95% CI])"
               + ("  |  best partial-depth line" if partial else ""))
    for split, rows in run.summary["splits"].items():
        for e in rows:
            click.echo(f"{split:<16} {e['depth']:>5} {e['n']:>6} {e['chance']:>7.4f}  {best_text(e.get('best'))}"
                       + (f"  |  {best_text(e.get('best_partial'))}" if partial else ""))
    click.echo(f"wrote {len(run.names)} baseline(s) to {run.out} in {run.seconds:.1f}s")


@click.command("leaderboard")
@click.argument("results", nargs=-1)
@click.option("--out", "outs", multiple=True, required=True, metavar="FILE",
              help="board file; format by extension: .md, .html (sortable table + depth plot) or .csv (repeatable)")
@click.option("--baseline", "baselines", multiple=True, metavar="RESULTS_JSON",
              help="results to label as baseline rows, e.g. a published model to compare against (repeatable); "
                   "floor rows come from a `benchgen baselines` directory given as RESULTS")
@click.option("--sort", type=click.Choice(["mean", "id", "systematic", "depth", "horizon", "drop"]),
              default="mean", show_default=True,
              help="rank by: mean of ID/systematic/extrapolation accuracy, one of them, horizon, or smallest drop")
@click.option("--allow-partial", is_flag=True,
              help="show results that left test examples or loop counts unscored (marked partial) instead of refusing")
@click.option("--overwrite", is_flag=True, help="replace existing board files (only boards benchgen wrote)")
def leaderboard_cmd(results, outs, baselines, sort, allow_partial, overwrite) -> None:
    """Rank models evaluated on one dataset (refuses results whose dataset fingerprints differ).

    RESULTS are results.json files, the directories holding them, or a `benchgen baselines`
    output directory (its baselines become floor rows). Each row shows its coverage and the loop
    count it is reported at (the model's trained T when recorded, else the largest swept).

    \b
    Examples:
      benchgen leaderboard eval/*/results.json --baseline ref/results.json --out board.html --out board.md
      benchgen leaderboard eval/*/results.json floors/khop-small --out board.md
      benchgen leaderboard eval/partial/results.json --allow-partial --out board.md
    """
    from benchgen.evaluators.report.leaderboard import leaderboard

    with rendering(", ".join([*results, *baselines][:3])):
        rows = leaderboard(list(results), list(outs), baselines=list(baselines), sort=sort,
                           allow_partial=allow_partial, overwrite=overwrite)
    for r in rows:
        tag = " (floor)" if r.floor else " (baseline)" if r.baseline else ""
        click.echo(f"{r.rank:>3}. {r.model}{tag}{' (partial)' if r.partial else ''}")
    for o in outs:
        click.echo(f"wrote {o}")
