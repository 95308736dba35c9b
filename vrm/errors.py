"""Errors the command line reports as a message, without a traceback."""


class UserError(Exception):
    """A problem the user can fix: the message names the value and the fix."""
