"""The one exception type for user mistakes (bad scenes, bad flags, missing runs).

The CLI catches :class:`NerfkitError` and prints its message as one sentence with a non-zero exit,
never a traceback. Anything else that escapes is a bug in nerfkit and keeps its traceback.
"""


class NerfkitError(Exception):
    """A problem with the user's input: the message names the file or value and what was expected."""
