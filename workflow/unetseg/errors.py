"""The one exception type for user errors: the CLI prints it as one line and exits non-zero."""


class UnetsegError(Exception):
    """A problem with the user's input or configuration; the message names the file or key."""
