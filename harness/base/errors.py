"""One exception type for bad input, so the CLI can print one clear line and exit 2 instead of a traceback."""


class XeonftError(Exception):
    """A problem with what the user asked for (a bad config, an unknown model, a dataset without columns)."""

    exit_code = 2


class Failure(XeonftError):
    """Not the user's input: the machine or the run failed (a full disk, a result that could not be written)."""

    exit_code = 3


class Unavailable(XeonftError):
    """The cell cannot run here (IPEX missing, an allocator not installed, too few cores): recorded, not a failure."""

    exit_code = 3
