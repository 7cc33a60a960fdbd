"""Errors that reach a user. `InputError` means bad input (exit code 2); it names the field."""

from __future__ import annotations


class LifecycleError(Exception):
    """Something a user should read, not a traceback (exit code 1)."""


class InputError(LifecycleError):
    """Bad input: the message names the field, row or line (exit code 2)."""

    def __init__(self, field: str | None, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


MAX_LISTED = 200  # errors written out in the message; `errors` keeps them all


class InputErrors(InputError):
    """Several bad inputs found at once (an import file): every one is listed."""

    def __init__(self, errors: list[InputError], source: str | None = None):
        """`source`: the file the errors are in, named before the list."""
        self.errors = errors
        lines = "\n".join(f"  {e}" for e in errors[:MAX_LISTED])
        if len(errors) > MAX_LISTED:
            lines += f"\n  ... and {len(errors) - MAX_LISTED} more"
        super().__init__(source, f"{len(errors)} error{'s' if len(errors) != 1 else ''}:\n{lines}")


class NotFound(InputError):
    """A named thing does not exist (still bad input: exit code 2)."""


class ShortNotice(InputError):
    """A milestone date less than 3 months away, without a reason."""


class DeliveryError(Exception):
    """A channel could not deliver (raised by channels and email backends, read by lifecycle.delivery).

    permanent: retrying cannot help (a 400 from SendGrid, an invalid address): the delivery fails now.
    retry_after: seconds the provider asked us to wait (Retry-After), used for the next attempt.
    unknown: the request reached the provider but its answer did not reach us: it may have been
    accepted. The delivery is not retried blindly (lifecycle.recovery reconciles it first).
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        retry_after: float | None = None,
        unknown: bool = False,
    ):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.retry_after = retry_after
        self.unknown = unknown
