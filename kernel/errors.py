"""One exception hierarchy: every message says what was wrong and how to fix it."""


class EmoflowError(Exception):
    """Base class for errors the CLI reports on one line."""


class InputError(EmoflowError):
    """The job, script, description, portrait or a path given by the user is unusable."""


class ItemError(InputError):
    """An InputError about one item of a list the user gave (its position) and, if known, one field of
    it: a form can mark what to correct without reading the message."""

    def __init__(self, message: str, item: int, field: str | None = None) -> None:
        super().__init__(message)
        self.item, self.field = item, field


class EngineError(EmoflowError):
    """An engine failed or is not available (missing package, missing weights)."""


class StoreError(EmoflowError):
    """The artifact store is unreachable, inconsistent or a blob failed verification."""


class IntegrityError(StoreError):
    """A blob's content no longer matches its sha256."""


class RunCancelled(EmoflowError):
    """Someone asked for the run to stop; it stops before its next stage (or mid-stage) and keeps
    every step it committed."""
