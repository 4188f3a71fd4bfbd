"""What every verb is: a name, a one-line help, its own flags and its run (the pattern of asv's `commands/`).

A verb's module owns its parser, its run and its exit-code policy, and says its side effects (a catalog write, a
file it leaves) in its help; `harness.cli` only builds the parser from the verbs and dispatches to one.
"""

from __future__ import annotations

import argparse
from typing import ClassVar


class Command:
    """One verb of `xeonft`. Subclasses set `name` and `help` and override both class methods."""

    name: ClassVar[str]
    help: ClassVar[str]

    @classmethod
    def setup_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add this verb's flags to its own subparser."""

    @classmethod
    def run(cls, args: argparse.Namespace) -> int:
        """Do the verb; return the process's exit code (0 fine, 1 a regression found, 2 bad input, 3 a failure)."""
        raise NotImplementedError
