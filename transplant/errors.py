"""The one exception type that the CLI turns into a single line and exit code 2."""


class UserError(Exception):
    """Bad input a user can fix: the message says what is wrong and what to do."""
