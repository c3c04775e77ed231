"""Data commands: ``tasks``, ``generate TASK``, ``info`` and ``audit``."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import click

from benchgen.cli.common import PROGRESS_HELP, echo_json, fail, hint, progress, quoted, unused

# the CPU reference-model preset to suggest after generating a task's dataset (README: Reference models)
TRAIN_PRESETS = {"khop": "cpu-khop-looped", "addition": "cpu-addition-looped"}


@click.command("tasks")
@click.option("--json", "as_json", is_flag=True, help="print JSON: name, description, presets")
def tasks_cmd(as_json: bool) -> None:
    """List tasks and their presets (built-in and from `benchgen.tasks` entry points).

    \b
    Example:
      benchgen tasks
      benchgen tasks --json
    """
    from benchgen import registry
    from benchgen.errors import BenchgenError

    listed = []
    for name in registry.task_names():
        try:  # one broken plugin must not hide the others
            t = registry.get_task(name)
            listed.append({"name": t.name, "description": t.description,
                           "presets": {p: preset.description for p, preset in t.presets.items()}})
        except BenchgenError as e:
            listed.append({"name": name, "error": str(e)})
    if as_json:
        echo_json(listed)
        return
    for t in listed:
        click.echo(f"{t['name']}: {t.get('description') or 'cannot be loaded: ' + t['error']}")
        for name, description in t.get("presets", {}).items():
            click.echo(f"  --preset {name}: {description}")


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


def _generate(task, preset, out, overwrite, show_progress, config_file, sets, workers=None, **options) -> None:
    """`generate TASK`: options <- config file <- --set <- flags; then the pipeline writes the dataset."""
    from benchgen.config import build_config, parse_sets, read_config
    from benchgen.imports import pandas_hidden
    from benchgen.pipeline.generate import generate

    given = read_config(config_file) if config_file else {}  # same keys as the options
    file_preset, file_out = given.pop("preset", None), given.pop("out", None)
    file_workers = given.pop("workers", None) if task.parallel else None
    workers = workers if workers is not None else file_workers
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        fail(f"generate {task.name}: --workers: expected an integer >= 1, got {workers!r}")
    overwrite = overwrite or bool(given.pop("overwrite", False))
    preset, out = preset if preset is not None else file_preset, out or file_out
    if out is None:
        fail(f"generate {task.name}: give --out DIR (or \"out\" in --config)")
    flags = {k: v for k, v in options.items() if v is not None}
    cfg = build_config(task.config, task.presets, preset, {**given, **parse_sets(sets), **flags})
    with pandas_hidden():  # this process only generates: pyarrow need not import pandas
        path = generate(task, cfg, out, overwrite=overwrite, progress=progress(show_progress), workers=workers)
    print_info(path)
    preset = TRAIN_PRESETS.get(task.name)
    train = (f"benchgen train --data {quoted(out)} --preset {preset} --out "
             f"{unused(f'runs/{Path(str(out)).name}-looped')}" if preset else "benchgen train --list-presets")
    hint(f"benchgen audit {quoted(out)}", f"benchgen export lm-eval {quoted(out)} --out {unused(f'{out}-lm-eval')}",
         train, f"python -c \"import benchgen; print(benchgen.load('{out}', output='arrow'))\"")


def task_command(name: str) -> click.Command:
    """`generate NAME`: one option per field of the task's config dataclass, plus the shared ones."""
    from benchgen import registry

    task = registry.get_task(name)
    params = [
        click.Option(["--preset"], type=click.Choice(list(task.presets)), default=None,
                     help="start from a published setting; options given next override it"),
        click.Option(["--out"], default=None, help="output dataset directory (required here or in --config)"),
        click.Option(["--overwrite"], is_flag=True, help="replace an existing dataset at --out"),
        click.Option(["--progress/--no-progress", "show_progress"], default=None, help=PROGRESS_HELP),
        click.Option(["--config", "config_file"], default=None, metavar="FILE",
                     help="JSON/YAML file of these options (keys as option names, e.g. train_hops: 2-4, "
                          "preset, out); options given on the command line win"),
        click.Option(["--set", "sets"], multiple=True, metavar="KEY=VALUE",
                     help="override one config option, as `train --set` does for models (e.g. --set "
                          "train_hops=2-4; repeatable); the option's own flag wins"),
        *([click.Option(["--workers"], type=int, default=None, metavar="N",
                        help="processes that sample and encode shards; the files are identical for any N "
                             "(small datasets run in-process)  [default: the number of CPUs]")]
          if task.parallel else []),
        *[_option_for(f) for f in dataclasses.fields(task.config)],
    ]
    first = next(iter(task.presets), None)
    return click.Command(
        name, callback=lambda **kw: _generate(task, **kw), params=params,
        help=f"{task.description}.\n\nPresets: {', '.join(task.presets)}.\n\n\b\nExamples:\n"
             f"  benchgen generate {name} --out data/{name}\n"
             f"  benchgen generate {name} --config {name}.yaml\n"
             + (f"  benchgen generate {name} --preset {first} --out data/{name}-preset" if first else ""),
        short_help=task.description)


class TaskGroup(click.Group):
    """`generate` subcommands, one per registered task, built from the task's config dataclass."""

    def list_commands(self, ctx):
        from benchgen import registry

        return registry.task_names()

    def get_command(self, ctx, name):
        from benchgen import registry

        return task_command(name) if name in registry.task_names() else None


@click.group("generate", cls=TaskGroup)
def generate_group() -> None:
    """Generate a dataset for a task (see `benchgen tasks`).

    \b
    Examples:
      benchgen generate khop --out data/khop
      benchgen generate khop --preset ltg-depth --out data/ltg-depth
      benchgen generate khop --train-hops 2-5 --test-hops 6,8 --out data/k
    """


def print_info(path) -> None:
    """Counts per split and depth of a dataset directory."""
    from benchgen.dataset import load

    ds = load(path)
    click.echo(f"{ds.path}  task={ds.task}  seed={ds.manifest.get('seed')}  fingerprint={ds.fingerprint[:16]}")
    click.echo(f"{'split':<16} {'rows':>10}  depths (depth: rows)")
    for split, info in ds.manifest["splits"].items():
        depths = ", ".join(f"{d}: {n}" for d, n in info["depths"].items())
        click.echo(f"{split:<16} {info['rows']:>10}  {depths}")


@click.command("info")
@click.argument("dataset_dir")
@click.option("--json", "as_json", is_flag=True, help="print JSON: task, seed, fingerprint, config, splits")
def info_cmd(dataset_dir: str, as_json: bool) -> None:
    """Counts per split and depth of a dataset.

    \b
    Example:
      benchgen info data/khop
      benchgen info data/khop --json
    """
    if as_json:
        from benchgen.dataset import load

        ds = load(dataset_dir)
        m = ds.manifest
        echo_json({"path": str(ds.path), "task": ds.task, "seed": m.get("seed"), "fingerprint": ds.fingerprint,
                   "benchgen_version": m.get("benchgen_version"), "config": ds.config,
                   "splits": {s: {"rows": i["rows"], "depths": i["depths"]} for s, i in m["splits"].items()}})
        return
    print_info(dataset_dir)


@click.command("audit")
@click.argument("dataset_dir")
@click.option("--json", "as_json", is_flag=True, help="print JSON: passed, checks (with counts) and violations")
@click.option("--verbose", "-v", is_flag=True, help="list every check with what it covered and its violations")
@click.option("--sample", type=int, default=None, metavar="N",
              help="walk only a seeded sample of N rows per split in the task's per-row check (large datasets; "
                   "hashes, ids, depth histograms, repeats, overlaps and validity still cover every row)")
@click.option("--workers", type=int, default=None, metavar="N",
              help="processes that check shards in the task's per-row check (datasets of 1M rows or more; "
                   "default: the CPUs this job may use); the report is the same for any N")
def audit_cmd(dataset_dir: str, as_json: bool, verbose: bool, sample: int | None, workers: int | None) -> None:
    """Re-derive every split guarantee from the written files; exit 1 on any violation.

    Uses an independent route (e.g. a walk of kg.parquet's tail table for khop).

    \b
    Example:
      benchgen audit data/khop
      benchgen audit data/khop --verbose
      benchgen audit data/khop --json
      benchgen audit data/khop-10m --sample 100000
      benchgen audit data/khop-10m --workers 2
    """
    from benchgen.dataset import load
    from benchgen.pipeline.audit import audit_report

    if workers is not None and workers < 1:
        fail(f"audit: --workers: expected an integer >= 1, got {workers}")
    ds = load(dataset_dir)
    report = audit_report(ds, sample=sample, workers=workers)
    if as_json:
        echo_json({"dataset": str(ds.path), "task": ds.task, "passed": report.passed, "checks": report.to_json(),
                   "violations": report.problems, "sample": sample if report.sample_note else None})
        sys.exit(0 if report.passed else 1)
    if report.sample_note:
        click.echo(f"audit {report.sample_note}")
    if verbose:
        for c in report.checks:
            status = "ok" if not c.violations else f"{len(c.violations)} violation(s)"
            click.echo(f"{c.check:<7} {c.checked:>10} {c.unit:<6} {status:<16} {c.description}")
    if not report.passed:
        for p in report.problems:
            click.echo(f"VIOLATION: {p}", err=True)
        click.echo(f"audit failed: {len(report.problems)} violation(s)", err=True)
        sys.exit(1)
    click.echo("audit passed: every split guarantee holds")
