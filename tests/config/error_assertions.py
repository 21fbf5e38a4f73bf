"""Shared assertion of the config tests: one clear error, not a chain of tracebacks."""


def assert_one_clear_error(error, *fragments):
    message = str(error.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert error.value.__cause__ is None
    assert error.value.__context__ is None or error.value.__suppress_context__
