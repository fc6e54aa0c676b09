"""Errors a user can hit. Each carries one sentence that says what happened and what to do."""


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
