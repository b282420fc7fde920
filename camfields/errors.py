"""The one exception type camfields raises for bad user input."""


class CamfieldsError(ValueError):
    """A problem with the user's input, config or files, stated in one sentence.

    Entry points catch it, print the message and exit with a non-zero status,
    instead of showing a traceback from deep inside torch.
    """
