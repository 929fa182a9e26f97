"""The exceptions a command ends with on purpose.

Library code raises :class:`UsageError` before it writes anything; the command-line
wrapper in :mod:`rlgen.cli` turns it into one line on stderr and exit code 2. :class:`Stopped`
ends a run that Ctrl-C or SIGTERM stopped, saying which checkpoint continues it.
"""


class UsageError(ValueError):
    """Bad input from the user: the message names the bad value and what is accepted."""


class Stopped(KeyboardInterrupt):
    """A run stopped by a signal (normally just after saving its checkpoint); the message says which
    checkpoint is kept and how to continue from it.

    A ``KeyboardInterrupt``, so code that already handles Ctrl-C handles it; ``exit_code`` is 128 plus the
    signal's number, as a shell reports a process ended by that signal (130 for Ctrl-C, 143 for SIGTERM).
    """

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
