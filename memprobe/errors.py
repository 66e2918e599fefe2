"""Errors the CLI turns into one clear line and a non-zero exit (never a traceback)."""


class MemprobeError(Exception):
    """A user-facing failure: bad input, unwritable output, too little memory..."""

    exit_code = 2


class InputError(MemprobeError):
    """An input file that is missing, empty, binary or malformed."""


class ResourceError(MemprobeError):
    """A request the machine cannot serve (memory, GPU)."""

    exit_code = 3
