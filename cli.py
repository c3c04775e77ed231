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


if __name__ == "__main__":
    main()
