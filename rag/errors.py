"""Errors a user can hit. Each carries one sentence that says what happened and what to do."""

import os
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


class ServerUnreachableError(KBError):
    """No configured model server answered (or the one a model lives on did not)."""


class ModelNotFoundError(KBError):
    pass


class ModelTimeoutError(KBError):
    pass


class ModelResponseError(KBError):
    """The server answered with an error, broke off, or sent something unreadable."""


class ModelAuthError(ModelResponseError):
    """The server refused the API key."""


class MalformedReplyError(ModelResponseError):
    """Structured output that is not JSON or does not match its schema."""


class PromptTooLongError(ModelResponseError):
    """The server rejected the prompt as longer than its window. `window` is the window the
    server stated in its error (tokens), when it stated one."""

    def __init__(self, message: str, window: int | None = None) -> None:
        super().__init__(message)
        self.window = window


class QuestionTooLongError(KBError):
    """The question alone does not fit the model's window; nothing was sent."""


class AnswerStoppedError(KBError):
    """The request was hung up (`rag.llm.hangup.Hangup`): the answer was stopped on purpose."""


# Ollama's own names, kept for the Ollama adapter's callers and older code.
OllamaUnreachableError = ServerUnreachableError
OllamaTimeoutError = ModelTimeoutError
OllamaResponseError = ModelResponseError


EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for `... | head`


def run_reporting_errors(command: Callable[[], int], interrupted: str = "Interrupted.") -> int:
    """Run a command-line entry point: a `KBError` ends in its one sentence on stderr and exit
    code 2, Ctrl-C in `interrupted` and 130, a closed pipe quietly in 141; never a traceback."""
    try:
        return command()
    except KBError as err:
        print(err, file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _silence_stdout() -> None:
    """The reader of our output went away (`| head`): point stdout at /dev/null so that the
    interpreter's final flush does not raise again (the recipe of Python's `signal` docs)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
