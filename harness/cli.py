"""The `xeonft` command: builds the parser from the verbs (`harness.commands`), calls one, and turns what escapes
it into an exit code. No verb's logic lives here."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence

from harness.base.errors import Failure, Unavailable, XeonftError
from harness.base.messages import one_line
from harness.base.secrets import redact
from harness.commands import COMMANDS

VERBS: dict[str, Callable[[argparse.Namespace], int]] = {c.name: c.run for c in COMMANDS}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xeonft", description="LoRA fine-tuning on Xeon CPUs, measured: run the "
                                     "recipe, sweep a matrix of it, report and compare, size a server, track library "
                                     "releases. `xeonft VERB --help` says what a verb does and writes.")
    sub = parser.add_subparsers(dest="verb", required=True)
    for command in COMMANDS:
        command.setup_arguments(sub.add_parser(command.name, help=command.help, description=command.help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Exit codes (docs/cli.md has the table): the verb's own (0, or 1 for a regression found); 2 bad input (an
    XeonftError: one line naming the problem); 3 a failure that is not the user's (the machine, a run, a bug: one
    line, a bug's traceback kept in a file it names); 130 interrupted. Every message is one bounded line."""
    args = build_parser().parse_args(argv)
    # transformers 5 renames gradient_checkpointing while trl still sets it: noise for users, not news.
    warnings.filterwarnings("ignore", message=".*is deprecated and will be removed in v6", category=FutureWarning)
    try:
        return VERBS[args.verb](args)
    except (Failure, Unavailable) as err:  # not the user's input: the machine or the run
        _say(f"failed: {err}")
        return err.exit_code
    except XeonftError as err:
        _say(f"error: {err}")
        return err.exit_code
    except KeyboardInterrupt as err:
        _say(f"interrupted{': ' + str(err) if str(err) else ''}")
        return 130
    except BrokenPipeError:  # the reader went away (`xeonft history | head`): nothing is wrong, nothing to say
        import contextlib
        import os

        with contextlib.suppress(OSError, ValueError):  # so the exit's flush does not fail again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as err:  # a bug, or the machine (a full disk): one line, the traceback kept for a report
        import tempfile
        import traceback

        with tempfile.NamedTemporaryFile("w", prefix="xeonft-crash-", suffix=".txt", delete=False) as f:
            traceback.print_exc(file=f)
        _say(f"failed: {type(err).__name__}: {one_line(str(err), 200)} (traceback in {f.name})")
        return 3


def _say(message: str) -> None:
    print(one_line(redact(f"xeonft: {message}"), limit=MESSAGE_LIMIT), file=sys.stderr)


MESSAGE_LIMIT = 400  # the file a crash names must fit beside a cut message
