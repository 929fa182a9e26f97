"""The one exception type for bad user input.

Library code raises :class:`UsageError` before it writes anything; the command-line
wrapper in :mod:`rlgen.cli` turns it into one line on stderr and exit code 2.
"""


class UsageError(ValueError):
    """Bad input from the user: the message names the bad value and what is accepted."""
