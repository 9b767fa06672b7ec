"""The one exception type a user should ever see from dul.

A ``DulError`` carries a one-line message that names the problem (and the
file or params key involved) and, where there is one, the fix. Pipeline
entry points turn it into ``error: <message>`` on stderr and exit status 2.
"""


class DulError(Exception):
    """A problem with the user's input, config or environment (not a bug)."""
