"""Typed upstream errors: callers decide on the type (retry, fail the job, tell staff), never on text."""


class UpstreamError(Exception):
    retryable = False

    def __init__(self, message: str, *, system: str = "", status: int | None = None, code: str = ""):
        super().__init__(message)
        self.system = system
        self.status = status
        self.code = code

    def __str__(self):
        where = f"{self.system}: " if self.system else ""
        extra = f" [{self.code or self.status}]" if (self.code or self.status) else ""
        return f"{where}{self.args[0]}{extra}"


class AuthRejected(UpstreamError):
    """Credentials refused (bad/expired token, app not enabled). Retrying cannot help."""


class RateLimited(UpstreamError):
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw):
        super().__init__(message, **kw)
        self.retry_after = retry_after


class UpstreamUnavailable(UpstreamError):
    """5xx, timeouts, refused connections: transient, retried with backoff."""

    retryable = True


class BadPayload(UpstreamError):
    """The upstream answered with something we cannot read (not JSON, wrong shape)."""


class RequestRejected(UpstreamError):
    """The upstream refused this request (validation, permission): fix the request, don't retry."""
