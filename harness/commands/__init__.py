"""One module per verb: its parser, its run, its exit-code policy (`harness.cli` only dispatches).

`COMMANDS` is the one list of the verbs, in the order `xeonft --help` and the README's map of the verbs show them.
A verb's module imports its stage's code inside `run`, so that `xeonft VERB --help` stays quick.
"""

from harness.commands.base import Command
from harness.commands.bisect import Bisect
from harness.commands.bundle import Bundle
from harness.commands.cache import Cache
from harness.commands.compare import Compare
from harness.commands.env import Env
from harness.commands.fetch import Fetch
from harness.commands.finetune import Finetune
from harness.commands.history import History
from harness.commands.imports import Import
from harness.commands.machines import Machines
from harness.commands.merge import Merge
from harness.commands.peak import Peak
from harness.commands.report import Report
from harness.commands.run import Run
from harness.commands.size import Size

COMMANDS: tuple[type[Command], ...] = (Fetch, Finetune, Run, Report, Compare, Merge, Bundle, Import, Size, Peak,
                                       History, Machines, Bisect, Env, Cache)

__all__ = ["COMMANDS", "Command"]
