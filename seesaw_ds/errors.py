"""The one error type for user mistakes, and a hint shared by the config checks."""

__all__ = ["SeesawConfigError", "text_number_hint"]


class SeesawConfigError(ValueError):
    """A user mistake in a config, an argument or input data.

    The message names the offending field (or path) and the fix. It is raised before any
    expensive work starts, so the CLI can print it and exit 2 without a traceback.
    """


def text_number_hint(value: object) -> str:
    """A sentence for an error message when ``value`` is a number that was read as text.

    PyYAML follows YAML 1.1, whose float syntax needs a dot and a signed exponent: ``1e-3``,
    ``3e9`` or ``1.0e3`` load as strings. Returns "" for anything else.
    """
    if not isinstance(value, str):
        return ""
    try:
        float(value)
    except ValueError:
        return ""
    return (
        f" It was read as text ({value!r}): YAML (PyYAML) reads a number such as 1e-3 without "
        "a dot and a signed exponent as a string; write 1.0e-3 or 0.001."
    )
