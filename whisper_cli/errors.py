"""The errors the library raises for problems a user can fix.

Each carries a message that makes sense on one line of a terminal; the command line prints
it without a traceback. Anything else that escapes is a bug and keeps its traceback.
"""


class WhisperCliError(Exception):
    """A problem with the input, the model or the options, explained in one line."""


class AudioError(WhisperCliError):
    """An input that cannot be decoded as audio."""


class ModelError(WhisperCliError):
    """A model that cannot be found, downloaded or loaded."""


class OptionsError(WhisperCliError, ValueError):
    """Options that contradict each other or the model."""
