"""The one error type for user mistakes."""

__all__ = ["SeesawConfigError"]


class SeesawConfigError(ValueError):
    """A user mistake in a config, an argument or input data.

    The message names the offending field (or path) and the fix. It is raised before any
    expensive work starts, so the CLI can print it and exit 2 without a traceback.
    """
