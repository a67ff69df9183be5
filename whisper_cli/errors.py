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


class HubUnavailableError(ModelError):
    """A model that is not cached, while the Hugging Face Hub cannot be reached or is off
    (offline mode): every other model that is not cached would fail the same way."""


class OptionsError(WhisperCliError, ValueError):
    """Options that contradict each other or the model."""


def first_line(error: BaseException) -> str:
    """An exception's message cut to its first line, or its type's name when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def os_reason(error: OSError) -> str:
    """What an OSError says went wrong, in lower case: 'permission denied'."""
    return (error.strerror or str(error)).lower()
