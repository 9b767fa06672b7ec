"""The one exception type a user should ever see from dul.

A ``DulError`` carries a one-line message that names the problem (and the
file or params key involved) and, where there is one, the fix. Pipeline
entry points turn it into ``error: <message>`` on stderr and exit status 2.
"""

import difflib


class DulError(Exception):
    """A problem with the user's input, config or environment (not a bug)."""


def did_you_mean(word: str, options, cutoff: float = 0.6) -> str:
    """The hint for a name that is not among ``options``:
    "did you mean 'x'? choose one of: a, b, c" (the first part only when a
    valid name is close to ``word``)."""
    options = list(options)
    close = difflib.get_close_matches(str(word), options, n=1, cutoff=cutoff)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"{hint}choose one of: {', '.join(options)}"
