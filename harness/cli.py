"""The `xeonft` command: builds the parser from the verbs (`harness.commands`), calls one, and turns what escapes
it into an exit code. No verb's logic lives here."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence

from harness.base.errors import XeonftError
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
    """Exit codes: the verb's own (0, or 1 for a regression found); 2 bad input (an XeonftError's, one line);
    3 a failure inside xeonft (one line, the traceback kept in a file it names); 130 interrupted."""
    args = build_parser().parse_args(argv)
    # transformers 5 renames gradient_checkpointing while trl still sets it: noise for users, not news.
    warnings.filterwarnings("ignore", message=".*is deprecated and will be removed in v6", category=FutureWarning)
    try:
        return VERBS[args.verb](args)
    except XeonftError as err:
        print(f"xeonft: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt as err:
        print(f"xeonft: interrupted{': ' + str(err) if str(err) else ''}", file=sys.stderr)
        return 130
    except Exception as err:  # a bug, or the machine (a full disk): one line, the traceback kept for a report
        import tempfile
        import traceback

        with tempfile.NamedTemporaryFile("w", prefix="xeonft-crash-", suffix=".txt", delete=False) as f:
            traceback.print_exc(file=f)
        print(f"xeonft: failed: {type(err).__name__}: {err} (traceback in {f.name})", file=sys.stderr)
        return 3
