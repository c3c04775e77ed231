"""benchgen command line: a thin click front end (parse, call the library, print).

One module per command group: ``data`` (tasks, generate, info, audit), ``evaluate`` (evaluate,
report, predict-oracle), ``train``, ``share`` (export, baselines, leaderboard); ``common`` holds
what they share. Nothing below this package imports click or the CLI.

Examples::

    benchgen tasks
    benchgen generate khop --preset grokked-composition --out data/grokked
    benchgen generate khop --train-hops 2-4 --test-hops 5,6 --out data/khop
    benchgen info data/khop
    benchgen audit data/khop
"""

from __future__ import annotations

import sys

import click

from benchgen.cli.common import fail, os_error_line
from benchgen.cli.data import audit_cmd, generate_group, info_cmd, tasks_cmd
from benchgen.cli.evaluate import evaluate_cmd, predict_oracle_cmd, report_cmd
from benchgen.cli.share import baselines_cmd, export_group, leaderboard_cmd
from benchgen.cli.train import train_cmd
from benchgen.errors import BenchgenError


class BenchgenGroup(click.Group):
    """Turns library, filesystem and usage errors into one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except BenchgenError as e:
            fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
        except OSError as e:
            line = os_error_line(e)
            if line is None:
                raise
            fail(line)
        except MemoryError:
            fail("out of memory (lower the sizes in the config)")
        except RuntimeError as e:  # torch allocation failures; any other RuntimeError is a bug and traces
            text = str(e)
            if "can't allocate memory" not in text and "out of memory" not in text.lower():
                raise
            fail("out of memory (lower the model, batch or dataset sizes)")
        except RecursionError:
            fail("input nested too deeply")

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


for command in (tasks_cmd, generate_group, info_cmd, audit_cmd, evaluate_cmd, report_cmd, predict_oracle_cmd,
                train_cmd, export_group, baselines_cmd, leaderboard_cmd):
    main.add_command(command)


if __name__ == "__main__":
    main()
