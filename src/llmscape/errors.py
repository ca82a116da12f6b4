"""One exception type for user-facing errors: scripts print its message, not a traceback."""


class LlmscapeError(Exception):
    """Bad input or configuration, explained in words a user can act on."""
