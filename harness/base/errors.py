"""The errors xeonft expects, so the CLI prints one clear line and exits with the error's code instead of a
traceback: XeonftError (the user's input, exit 2) and two kinds of it that are not the user's fault, Failure (the
machine or the run, exit 3) and Unavailable (the cell cannot run here, exit 3). The CLI catches the base type
once; each kind carries its own exit code."""


class XeonftError(Exception):
    """A problem with what the user asked for (a bad config, an unknown model, a dataset without columns)."""

    exit_code = 2


class Failure(XeonftError):
    """Not the user's input: the machine or the run failed (a full disk, a result that could not be written)."""

    exit_code = 3


class Unavailable(XeonftError):
    """The cell cannot run here (IPEX missing, an allocator not installed, too few cores): recorded, not a failure."""

    exit_code = 3
