"""benchgen command line: thin click front end (parse, call the library, print).

Examples::

    benchgen tasks
    benchgen generate khop --preset grokked-composition --out data/grokked
    benchgen generate khop --train-hops 2-4 --test-hops 5,6 --out data/khop
    benchgen info data/khop
    benchgen audit data/khop
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import sys

import click

from benchgen.errors import BenchgenError


def _fail(message: str) -> None:
    """Print one clear error line and exit non-zero."""
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


# Filesystem conditions a user can cause (bad --out, full disk, permissions): one line, never a traceback.
_FS_ERRNOS = {"ENOSPC", "EDQUOT", "EACCES", "EPERM", "EROFS", "ENAMETOOLONG", "ENOTDIR", "EISDIR", "ENOENT",
              "EEXIST", "ENOTEMPTY", "ELOOP", "EMFILE", "ENFILE", "EFBIG", "EIO", "EXDEV", "EBUSY", "ETXTBSY"}


def _os_error_line(e: OSError) -> str | None:
    """One line for a filesystem error (None for OS errors that are not about files)."""
    import errno as _errno

    name = _errno.errorcode.get(e.errno or 0)
    if name not in _FS_ERRNOS:
        return None
    where = e.filename if e.filename is not None else ""
    extra = {"ENOSPC": " (disk full)", "EDQUOT": " (quota exceeded)"}.get(name, "")
    return f"{where}: {e.strerror or name}{extra}" if where else f"{e.strerror or name}{extra}"


def _progress(flag: bool | None) -> bool:
    """Progress bars as asked; by default only when stderr is a terminal (scripts and CI stay quiet)."""
    return sys.stderr.isatty() if flag is None else flag


PROGRESS_HELP = "show progress bars [default: only when stderr is a terminal]"


def _hint(*commands: str) -> None:
    """Suggest next commands on stderr (stdout stays parseable)."""
    click.echo("next:", err=True)
    for c in commands:
        click.echo(f"  {c}", err=True)


def _echo_json(data) -> None:
    """Machine-readable output for --json (one JSON document on stdout)."""
    import json

    click.echo(json.dumps(data, indent=1, default=str))


class BenchgenGroup(click.Group):
    """Turns library, filesystem and usage errors into one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except BenchgenError as e:
            _fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
        except OSError as e:
            line = _os_error_line(e)
            if line is None:
                raise
            _fail(line)
        except MemoryError:
            _fail("out of memory (lower the sizes in the config)")
        except RuntimeError as e:  # torch allocation failures; any other RuntimeError is a bug and traces
            text = str(e)
            if "can't allocate memory" not in text and "out of memory" not in text.lower():
                raise
            _fail("out of memory (lower the model, batch or dataset sizes)")
        except RecursionError:
            _fail("input nested too deeply")

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """Usage errors as one line; SIGTERM handled like SIGINT (outputs cleaned up, exit 143)."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        from benchgen.atomic import Terminated, install_sigterm_handler, restore_sigterm_handler

        previous = install_sigterm_handler()
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as e:
            help_error = getattr(click.exceptions, "NoArgsIsHelpError", None)
            if help_error is not None and isinstance(e, help_error):  # bare `benchgen`: show the help
                e.show()
                sys.exit(e.exit_code)
            hint = ""
            ctx = getattr(e, "ctx", None)
            if isinstance(e, click.UsageError) and ctx is not None:
                hint = f" (see '{ctx.command_path} --help')"
            click.echo(f"error: {' '.join(e.format_message().split())}{hint}", err=True)
            sys.exit(e.exit_code)
        except click.Abort as e:
            if isinstance(e.__context__, Terminated) or isinstance(e.__cause__, Terminated):
                click.echo("error: terminated by SIGTERM; partial output removed", err=True)
                sys.exit(143)
            click.echo("Aborted!", err=True)
            sys.exit(1)
        finally:
            restore_sigterm_handler(previous)
        sys.exit(rv if isinstance(rv, int) else 0)


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
@click.option("--json", "as_json", is_flag=True, help="print JSON: name, description, presets")
def tasks_cmd(as_json: bool) -> None:
    """List tasks and their presets (built-in and from `benchgen.tasks` entry points).

    \b
    Example:
      benchgen tasks
      benchgen tasks --json
    """
    from benchgen import registry

    if as_json:
        _echo_json([{"name": n, "description": registry.get_task(n).DESCRIPTION,
                     "presets": {p: spec["description"] for p, spec in registry.get_task(n).PRESETS.items()}}
                    for n in registry.task_names()])
        return
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

    takes_workers = "workers" in inspect.signature(mod.generate).parameters

    def callback(preset, out, overwrite, progress, config_file, workers=None, **options):
        from benchgen.api import read_config
        from benchgen.config import build_config

        given = read_config(config_file) if config_file else {}  # same keys as the options
        file_preset, file_out = given.pop("preset", None), given.pop("out", None)
        file_workers = given.pop("workers", None) if takes_workers else None
        workers = workers if workers is not None else file_workers
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            _fail(f"generate {name}: --workers: expected an integer >= 1, got {workers!r}")
        run = {"workers": workers} if takes_workers else {}
        overwrite = overwrite or bool(given.pop("overwrite", False))
        preset, out = preset if preset is not None else file_preset, out or file_out
        if out is None:
            _fail(f"generate {name}: give --out DIR (or \"out\" in --config)")
        cfg = build_config(mod.CONFIG, mod.PRESETS, preset,
                           {**given, **{k: v for k, v in options.items() if v is not None}})
        from benchgen.imports import pandas_hidden

        with pandas_hidden():  # this process only generates: pyarrow need not import pandas
            path = mod.generate(cfg, out, overwrite=overwrite, progress=_progress(progress), **run)
        _print_info(path)
        _hint(f"benchgen audit {out}", f"benchgen export lm-eval {out} --out {out}-lm-eval",
              f"benchgen train --data {out} --list-presets",
              f"python -c \"import benchgen; print(benchgen.load('{out}', output='datasets'))\"")

    params = [
        click.Option(["--preset"], type=click.Choice(list(mod.PRESETS)), default=None,
                     help="start from a published setting; options given next override it"),
        click.Option(["--out"], default=None, help="output dataset directory (required here or in --config)"),
        click.Option(["--overwrite"], is_flag=True, help="replace an existing dataset at --out"),
        click.Option(["--progress/--no-progress"], default=None, help=PROGRESS_HELP),
        click.Option(["--config", "config_file"], default=None, metavar="FILE",
                     help="JSON/YAML file of these options (keys as option names, e.g. train_hops: 2-4, "
                          "preset, out); options given on the command line win"),
        *([click.Option(["--workers"], type=int, default=None, metavar="N",
                        help="processes that sample and encode shards; the files are identical for any N "
                             "(small datasets run in-process)  [default: the number of CPUs]")]
          if takes_workers else []),
        *[_option_for(f) for f in dataclasses.fields(mod.CONFIG)],
    ]
    presets = ", ".join(mod.PRESETS)
    return click.Command(
        name, callback=callback, params=params,
        help=f"{mod.DESCRIPTION}.\n\nPresets: {presets}.\n\n\b\nExamples:\n"
             f"  benchgen generate {name} --out data/{name}\n"
             f"  benchgen generate {name} --config {name}.yaml\n"
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
@click.option("--json", "as_json", is_flag=True, help="print JSON: task, seed, fingerprint, config, splits")
def info(dataset_dir: str, as_json: bool) -> None:
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
        _echo_json({"path": str(ds.path), "task": ds.task, "seed": m.get("seed"), "fingerprint": ds.fingerprint,
                    "benchgen_version": m.get("benchgen_version"), "config": ds.config,
                    "splits": {s: {"rows": i["rows"], "depths": i["depths"]} for s, i in m["splits"].items()}})
        return
    _print_info(dataset_dir)


def _audit_checks(ds, problems: list[str]) -> list[dict]:
    """The audit's checks, what each covered (count) and its violations, for --verbose / --json."""
    splits = ds.manifest["splits"]
    rows = sum(i["rows"] for i in splits.values())
    checks = [
        ("files", "shard and task-file hashes and row counts match manifest.json",
         sum(len(i["shards"]) for i in splits.values()) + len(ds.manifest.get("extras", {})), "files",
         ("sha256", "rows on disk", "task file")),
        ("format", "required columns, split column, id prefix and depth histogram per split", len(splits), "splits",
         ("missing column", "split column", "ids not of the form", "depth histogram")),
        ("ids", "ids unique across the dataset", rows, "ids", ("not unique",)),
        ("validity", "no non-reasoning baseline beats chance on a held-out split (train lookup: on any "
         "test split)", sum(1 for s in splits if s.startswith("test")), "splits", ("validity:",)),
    ]
    out, claimed = [], set()
    for key, what, n, unit, needles in checks:
        hits = [p for p in problems if any(k in p for k in needles)]
        claimed.update(hits)
        out.append({"check": key, "description": what, "checked": n, "unit": unit, "violations": hits})
    out.append({"check": "task", "description": f"{ds.task} split guarantees re-derived from the files "
                "by an independent route (per row, plus task-level checks)", "checked": rows, "unit": "rows",
                "violations": [p for p in problems if p not in claimed]})
    return out


@main.command("audit")
@click.argument("dataset_dir")
@click.option("--json", "as_json", is_flag=True, help="print JSON: passed, checks (with counts) and violations")
@click.option("--verbose", "-v", is_flag=True, help="list every check with what it covered and its violations")
@click.option("--sample", type=int, default=None, metavar="N",
              help="walk only a seeded sample of N rows per split in the task's per-row check (large datasets; "
                   "hashes, ids, depth histograms, repeats, overlaps and validity still cover every row)")
def audit_cmd(dataset_dir: str, as_json: bool, verbose: bool, sample: int | None) -> None:
    """Re-derive every split guarantee from the written files; exit 1 on any violation.

    Uses an independent route (e.g. a networkx traversal of kg.parquet for khop).

    \b
    Example:
      benchgen audit data/khop
      benchgen audit data/khop --verbose
      benchgen audit data/khop --json
      benchgen audit data/khop-10m --sample 100000
    """
    from benchgen.audit import audit
    from benchgen.dataset import load

    ds = load(dataset_dir)
    problems = audit(ds, sample=sample)
    rows = {s: i["rows"] for s, i in ds.manifest["splits"].items()}
    note = None if sample is None or sample >= max(rows.values()) else (
        f"sampled: the per-row {ds.task} check walked a seeded sample of at most {sample:,} rows per split ("
        + ", ".join(f"{s} {min(sample, n):,} of {n:,}" for s, n in rows.items())
        + "); every other check covered every row")
    if as_json or verbose:
        checks = _audit_checks(ds, problems)
        if note:
            checks[-1]["checked"] = sum(min(sample, n) for n in rows.values())
            checks[-1]["sampled"] = note
    if as_json:
        _echo_json({"dataset": str(ds.path), "task": ds.task, "passed": not problems, "checks": checks,
                    "violations": problems, "sample": sample if note else None})
        sys.exit(1 if problems else 0)
    if note:
        click.echo(f"audit {note}")
    if verbose:
        for c in checks:
            status = "ok" if not c["violations"] else f"{len(c['violations'])} violation(s)"
            click.echo(f"{c['check']:<7} {c['checked']:>10} {c['unit']:<6} {status:<16} {c['description']}")
    if problems:
        for p in problems:
            click.echo(f"VIOLATION: {p}", err=True)
        click.echo(f"audit failed: {len(problems)} violation(s)", err=True)
        sys.exit(1)
    click.echo("audit passed: every split guarantee holds")


# --- evaluate / report / predict-oracle (evaluators) ----------------------------------------------
MAX_BOOTSTRAP = 100_000


@contextlib.contextmanager
def _rendering(source: str):
    """results.json files are validated on load; a field the renderers still cannot use is one line."""
    try:
        yield
    except BenchgenError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        _fail(f"{source}: malformed results.json, cannot render it ({type(e).__name__}: {str(e)[:120]})")


def _check_numbers(floats: dict, ints: dict) -> None:
    """Finite floats; integers within (lo, hi) (limit named): one line instead of a crash or a hang."""
    import math

    for flag, v in floats.items():
        if v is not None and not math.isfinite(v):
            _fail(f"{flag}: expected a finite number, got {v}")
    for flag, (v, lo, hi) in ints.items():
        if v is not None and not lo <= v <= hi:
            _fail(f"{flag}: expected an integer in {lo}..{hi:,}, got {v}")


MAX_LOOPS, MAX_LOOP_COUNTS = 4096, 256


def _loops(text: str | None) -> list[int] | None:
    """--loops INTS: at most 256 loop counts, each in 1..4096 (a sweep beyond that never ends)."""
    from benchgen.config import parse_int_set

    if not text:
        return None
    values = list(parse_int_set(text, "loops"))
    if len(values) > MAX_LOOP_COUNTS or values[0] < 1 or values[-1] > MAX_LOOPS:
        _fail(f"--loops: expected at most {MAX_LOOP_COUNTS} loop counts in 1..{MAX_LOOPS}, got {text!r}")
    return values


def _check_device(device: str | None, *, allow_auto: bool) -> None:
    """--device must be cpu, cuda, cuda:N or mps (and auto for train)."""
    import re

    if device is None:
        return
    if not re.fullmatch(r"cpu|cuda(:\d+)?|mps" + ("|auto" if allow_auto else ""), device):
        _fail(f"--device: expected {'auto, ' if allow_auto else ''}cpu, cuda or cuda:N, got {device!r}")


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


def _spec_name(spec: str) -> str:
    """Default model name from a --model spec: its last path part (no absolute paths on boards)."""
    from pathlib import PurePath

    scheme, _, arg = spec.partition(":")
    if scheme == "python" and not arg.split(":")[0].endswith(".py"):
        return arg  # MODULE:FN is already a name
    path, sep, attr = arg.rpartition(":") if scheme == "python" else (arg, "", "")
    return (PurePath(path.rstrip("/\\")).name or path) + (f":{attr}" if sep else "")


def _quiet_hf() -> None:
    """--no-progress: silence Hugging Face's own bars (checkpoint loading, hub) as well as ours."""
    import os

    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    if "transformers" in sys.modules:  # already imported: switch its bars off directly too
        sys.modules["transformers"].utils.logging.disable_progress_bar()


def _print_results(results, outdir) -> None:
    """The summary lines, then what was written (plots/ only when made)."""
    from pathlib import Path

    from benchgen.evaluators.report import summary_lines

    for line in summary_lines(results):
        click.echo(line)
    made = sorted(p.name + ("/" if p.is_dir() else "") for p in Path(outdir).iterdir() if not p.name.startswith("."))
    click.echo(f"wrote {outdir}: {', '.join(made)}")


@main.command("evaluate")
@click.argument("dataset_dir")
@click.option("--predictions", "predictions", default=None, metavar="FILE",
              help="predictions file (.parquet, .jsonl or .csv): id, prediction, optional loops, margin, entropy, kl_prev")
@click.option("--model", "model_spec", default=None, metavar="SPEC",
              help="run a model: hf:LOCAL_DIR, torchscript:FILE.pt, python:MODULE:FN (or FILE.py:FN), "
                   "reference:RUN_DIR, or a plugin scheme; its predictions are written to OUT/predictions.parquet. "
                   "python: FN(examples: pyarrow.Table [id, prompt, input_ids], loops: int | None) -> "
                   "list of answers (str or token ids), or a Table with id, prediction")
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
@click.option("--progress/--no-progress", default=None,
              help="with --model: progress bars (also transformers' loading bars) [default: only when stderr "
                   "is a terminal]")
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

    from benchgen.evaluators import MetricSettings, Normalization, evaluate, write_outputs

    sources = sum(x is not None and x != () for x in (predictions, model_spec, lm_eval_samples or None))
    if sources != 1:
        _fail("evaluate: give exactly one of --predictions FILE, --model SPEC or --lm-eval-samples DIR")
    if model_spec is None and (model_loops or limit or loop_kwarg or device or trust_remote_code):
        _fail("evaluate: --loops, --limit, --loop-kwarg, --device and --trust-remote-code need --model SPEC")
    _check_numbers({"--tau": tau, "--delta": delta, "--halt-kl": halt_kl, "--halt-entropy": halt_entropy},
                   {"--bootstrap": (bootstrap, 0, MAX_BOOTSTRAP), "--seed": (seed, 0, 2**63 - 1),
                    "--batch-size": (batch_size, 1, 1 << 16), "--limit": (limit, 1, 1 << 40),
                    "--primary-loops": (primary_loops, 1, 1 << 16)})
    _check_device(device, allow_auto=False)
    settings = MetricSettings(tau=tau, delta=delta, bootstrap=bootstrap, seed=seed, halt_kl=halt_kl,
                              halt_entropy=halt_entropy, primary_loops=primary_loops)
    norm = Normalization(strip=not no_strip, casefold=casefold)
    from benchgen.dataset import check_target

    check_target(out, overwrite, kind="results")  # fail before scoring or running a model
    if predictions is not None:
        results = evaluate(dataset_dir, predictions, splits=_split_list(splits), allow_missing=allow_missing,
                           normalization=norm, settings=settings, model_name=model_name,
                           model_metadata=_metadata(model_meta))
        write_outputs(results, out, html=html, plots=not no_plots, overwrite=overwrite)
        _print_results(results, out)
        return
    from benchgen.evaluators.run_model import predict_for_evaluation

    progress = _progress(progress)
    if not progress:
        _quiet_hf()
    ds, preds, scored, meta = predict_for_evaluation(
        dataset_dir, model=model_spec, lm_eval_samples=lm_eval_samples, splits=_split_list(splits),
        loops=_loops(model_loops), batch_size=batch_size,
        limit=limit, progress=progress, device=device, loop_kwarg=loop_kwarg,
        trust_remote_code=trust_remote_code)
    found_name = meta.pop("model_name", None)  # lm-eval: from its results_*.json
    name = model_name or found_name or (_spec_name(model_spec) if model_spec else "lm-eval")
    results = evaluate(ds, preds, splits=scored, allow_missing=allow_missing or limit is not None,
                       normalization=norm, settings=settings, model_name=name,
                       model_metadata={**meta, **_metadata(model_meta)})
    write_outputs(results, out, html=html, plots=not no_plots, overwrite=overwrite, predictions=preds)
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

    with _rendering(results_json):
        paths = rerender(results_json, out, html=html, plots=not no_plots)
    for path in paths:
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

    from benchgen.atomic import safe_out_path
    from benchgen.dataset import load
    from benchgen.evaluators import oracle_predictions, write_predictions
    from benchgen.evaluators.predictions import file_format

    _check_numbers({"--noise": noise}, {"--seed": (seed, 0, 2**63 - 1)})
    out = str(safe_out_path(out))
    file_format(out)
    if Path(out).exists() and not overwrite:
        _fail(f"--out {out}: already exists (pass --overwrite to replace it)")
    if Path(out).is_dir():
        _fail(f"--out {out}: is a directory (expected a predictions file)")
    ds = load(dataset_dir)
    table = oracle_predictions(ds, splits=_split_list(splits), noise=noise, seed=seed,
                               loops=_loops(loops), token_ids=token_ids)
    write_predictions(table, out, fingerprint=ds.fingerprint, overwrite=overwrite)
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
@click.option("--curriculum/--no-curriculum", default=None,
              help="depth curriculum (LTG): add hop k+1 once k-hop accuracy passes train.curriculum_threshold "
                   "(tune with --set train.curriculum_start=2 --set train.curriculum_every=100 ...)")
@click.option("--resume", is_flag=True, help="continue the run in --out from its last checkpoint")
@click.option("--overwrite", is_flag=True, help="replace an existing run directory")
@click.option("--progress/--no-progress", default=None, help=PROGRESS_HELP)
@click.option("--list-presets", is_flag=True, is_eager=True, expose_value=False, callback=_list_train_presets,
              help="list training presets and exit")
def train_cmd(data, preset, config_file, overrides, out, steps, seed, device, threads, curriculum, resume, overwrite,
              progress):
    """Train a reference looped transformer (torchrun for multi-GPU / multi-process DDP).

    \b
    Examples:
      benchgen train --data data/khop-small --preset cpu-khop-looped --out runs/looped
      benchgen train --data data/khop-small --preset cpu-khop-vanilla --out runs/vanilla --set train.steps=500
      benchgen train --data data/khop-small --out runs/looped --resume --steps 6000
      torchrun --nproc_per_node 2 -m benchgen train --data DIR --preset ltg-depth --out runs/ltg
      benchgen train --data data/khop-depth-small --preset cpu-depth-looped --out runs/depth   # curriculum
    """
    from benchgen.registry import missing_extra

    try:
        from benchgen.reference_models.config import resolve
        from benchgen.reference_models.train import train
    except ModuleNotFoundError as e:
        raise missing_extra(e, "benchgen train") from None

    _check_numbers({}, {"--seed": (seed, 0, 2**63 - 1), "--steps": (steps, 0, 10**9),
                        "--threads": (threads, 0, 4096)})
    _check_device(device, allow_auto=True)
    extra = [f"train.{k}={v}" for k, v in (("seed", seed), ("device", device), ("threads", threads),
                                           ("curriculum", curriculum)) if v is not None]
    model_cfg = train_cfg = None
    if not resume:
        if preset is None and config_file is None:
            _fail("train: give --preset NAME or --config FILE (or --resume)")
        model_cfg, train_cfg = resolve(preset, config_file, [*overrides, *extra])
    elif preset or config_file or overrides or extra:
        _fail("--resume continues with the run's saved config: drop --preset/--config/--set/--seed/--device/--threads")
    run = train(data, out, model_cfg, train_cfg, resume=resume, overwrite=overwrite, steps=steps,
                progress=_progress(progress), preset=preset)
    click.echo(f"run saved to {run}")
    _hint(f"benchgen evaluate {data} --model reference:{run} --loops 1-16 --out eval/{_spec_name(str(run))} --html",
          "benchgen leaderboard eval/*/results.json --out board.html")


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

    info = export_lm_eval(load(dataset_dir), out, name=name, splits=_split_list(splits),
                          max_gen_toks=max_gen_toks, overwrite=overwrite, num_fewshot=num_fewshot,
                          hub_dataset=hub_dataset)
    click.echo(f"wrote {info['tasks']} task(s) in {len(info['split_groups'])} split group(s) to {info['path']}")
    _hint(f"lm_eval --model hf --model_args pretrained=PATH --include_path {info['path']} --tasks {info['group']} "
          "--log_samples --output_path lm-out", f"benchgen evaluate {dataset_dir} --lm-eval-samples lm-out --out eval/NAME")


@main.command("baselines")
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
    OUTDIR/summary.json / summary.md: per split and depth, chance and the best shortcut.

    \b
    Examples:
      benchgen baselines data/khop-small --out floors/khop-small
      benchgen baselines data/phop --only one_hop,positional_probe --out floors/phop
      benchgen leaderboard eval/*/results.json floors/khop-small --out board.md
    """
    from benchgen.evaluators.baselines import run_baselines

    run = run_baselines(dataset_dir, out, only=_split_list(only), splits=_split_list(splits),
                        overwrite=overwrite, plots=plots, bootstrap=bootstrap)
    if as_json:
        _echo_json({"out": str(run.out), "seconds": round(run.seconds, 2), **run.summary})
        return
    click.echo(f"{'split':<16} {'depth':>5} {'n':>6} {'chance':>7}  best shortcut baseline (accuracy [95% CI])")
    for split, rows in run.summary["splits"].items():
        for e in rows:
            b = e.get("best")
            best = "–" if b is None else f"{b['baseline']} {b['accuracy']:.3f} [{b['ci_low']:.3f}, {b['ci_high']:.3f}]"
            click.echo(f"{split:<16} {e['depth']:>5} {e['n']:>6} {e['chance']:>7.4f}  {best}")
    click.echo(f"wrote {len(run.names)} baseline(s) to {run.out} in {run.seconds:.1f}s")


@main.command("leaderboard")
@click.argument("results", nargs=-1)
@click.option("--out", "outs", multiple=True, required=True, metavar="FILE",
              help="board file; format by extension: .md, .html (sortable table + depth plot) or .csv (repeatable)")
@click.option("--baseline", "baselines", multiple=True, metavar="RESULTS_JSON",
              help="results to show as baseline rows (e.g. reference models; repeatable)")
@click.option("--sort", type=click.Choice(["mean", "id", "systematic", "depth", "horizon", "drop"]),
              default="mean", show_default=True,
              help="rank by: mean of ID/systematic/extrapolation accuracy, one of them, horizon, or smallest drop")
@click.option("--allow-partial", is_flag=True,
              help="show results that left test examples or loop counts unscored (marked partial) instead of refusing")
def leaderboard_cmd(results, outs, baselines, sort, allow_partial) -> None:
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
    from benchgen.evaluators.leaderboard import leaderboard

    with _rendering(", ".join([*results, *baselines][:3])):
        rows = leaderboard(list(results), list(outs), baselines=list(baselines), sort=sort,
                           allow_partial=allow_partial)
    for r in rows:
        tag = " (floor)" if r.floor else " (baseline)" if r.baseline else ""
        click.echo(f"{r.rank:>3}. {r.model}{tag}{' (partial)' if r.partial else ''}")
    for o in outs:
        click.echo(f"wrote {o}")


if __name__ == "__main__":
    main()
