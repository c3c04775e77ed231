"""``train``: a reference looped transformer on a benchgen dataset (presets, --set overrides, resume)."""

from __future__ import annotations

import sys

import click

from benchgen.cli.common import (
    MAX_SEED,
    PROGRESS_HELP,
    check_device,
    check_numbers,
    fail,
    hint,
    progress,
    quoted,
    spec_name,
    unused,
)


def _list_train_presets(ctx: click.Context, _param, value: bool) -> None:
    if value:
        from benchgen.reference_models.config import PRESETS

        for name, spec in PRESETS.items():
            click.echo(f"{name}: {spec.description}")
        ctx.exit()


@click.command("train")
@click.option("--data", "data", required=True, help="benchgen dataset directory to train on")
@click.option("--preset", default=None, help="named model+train setting (see --list-presets)")
@click.option("--config", "config_file", default=None, metavar="FILE",
              help='JSON/YAML file {"model": {...}, "train": {...}}')
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
@click.option("--progress/--no-progress", "show_progress", default=None, help=PROGRESS_HELP)
@click.option("--list-presets", is_flag=True, is_eager=True, expose_value=False, callback=_list_train_presets,
              help="list training presets and exit")
def train_cmd(data, preset, config_file, overrides, out, steps, seed, device, threads, curriculum, resume, overwrite,
              show_progress):
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

    check_numbers({}, {"--seed": (seed, 0, MAX_SEED), "--steps": (steps, 0, 10**9),
                        "--threads": (threads, 0, 4096)})
    check_device(device, allow_auto=True)
    extra = [f"train.{k}={v}" for k, v in (("seed", seed), ("device", device), ("threads", threads),
                                           ("curriculum", curriculum)) if v is not None]
    model_cfg = train_cfg = None
    if not resume:
        if preset is None and config_file is None:
            fail("train: give --preset NAME or --config FILE (or --resume)")
        model_cfg, train_cfg = resolve(preset, config_file, [*overrides, *extra])
    elif preset or config_file or overrides or extra:
        fail("--resume continues with the run's saved config: drop --preset/--config/--set/--seed/--device/--threads")
    try:
        run = train(data, out, model_cfg, train_cfg, resume=resume, overwrite=overwrite, steps=steps,
                    progress=progress(show_progress), preset=preset)
    except KeyboardInterrupt as e:  # SIGINT, or SIGTERM (benchgen.atomic.Terminated): say what was left
        from benchgen.atomic import Terminated
        from benchgen.reference_models.train import interrupted_state

        signal_name, code = ("SIGTERM", 143) if isinstance(e, Terminated) else ("SIGINT", 130)
        click.echo(f"error: stopped by {signal_name}; {interrupted_state(out, data)}", err=True)
        sys.exit(code)
    click.echo(f"run saved to {run}")
    out_dir = unused(f"eval/{spec_name(f'reference:{run}')}")
    # evaluate prints the next step (floors, then the leaderboard of exactly its results)
    hint(f"benchgen evaluate {quoted(data)} --model reference:{quoted(run)} --loops 1-16 --out {out_dir} --html")
