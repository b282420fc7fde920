"""The one exception type camfields raises for bad user input."""


class CamfieldsError(ValueError):
    """A problem with the user's input, config or files, stated in one sentence.

    Entry points catch it, print the message and exit with a non-zero status,
    instead of showing a traceback from deep inside torch.
    """


def first_line(error: BaseException) -> str:
    """The first line of an error's message (its type name when the message is empty)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
