"""Errors a user can hit. Each carries one sentence that says what happened and what to do."""

import sys
from collections.abc import Callable


class KBError(Exception):
    """Base for every error shown to a user: `str(err)` is the whole message."""


class SettingsError(KBError):
    pass


class StoreLockedError(KBError):
    pass


class StoreUnavailableError(KBError):
    pass


class EmbedderMismatchError(KBError):
    pass


class EmbedderLoadError(KBError):
    pass


class EmptyKnowledgeBaseError(KBError):
    pass


class OllamaUnreachableError(KBError):
    pass


class ModelNotFoundError(KBError):
    pass


class OllamaTimeoutError(KBError):
    pass


class OllamaResponseError(KBError):
    pass


EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def run_reporting_errors(command: Callable[[], int], interrupted: str = "Interrupted.") -> int:
    """Run a command-line entry point: a `KBError` ends in its one sentence on stderr and exit
    code 2, Ctrl-C in `interrupted` and 130; never a traceback for either."""
    try:
        return command()
    except KBError as err:
        print(err, file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return EXIT_INTERRUPTED
