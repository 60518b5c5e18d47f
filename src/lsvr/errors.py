"""The one exception type that means "the user's input is wrong" (exit status 2)."""


class InputError(Exception):
    """Bad usage or bad input: the CLI prints the message on one line and exits with 2."""
