"""Typed domain errors. Each layer raises these; `packager.http.errors` maps them to HTTP once."""

from __future__ import annotations


class PackagerError(Exception):
    """Base: `code` is the machine-readable `error` field of the JSON body."""

    code = "error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadMedia(PackagerError):
    code = "bad_media"


class InvalidField(PackagerError):
    code = "invalid_field"

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field


class BadRequest(PackagerError):
    code = "bad_request"


class Unauthorized(PackagerError):
    code = "unauthorized"


class Forbidden(PackagerError):
    """A private link without a valid, unexpired signature (403)."""

    code = "forbidden"


class NotFound(PackagerError):
    code = "not_found"


class StreamNotFound(NotFound):
    code = "stream_not_found"


class ClipNotFound(NotFound):
    code = "clip_not_found"


class VideoNotFound(NotFound):
    code = "video_not_found"


class VideoGone(PackagerError):
    """A saved video whose files are damaged or whose save failed (410)."""

    code = "video_damaged"


class StreamExists(PackagerError):
    code = "stream_exists"


class NothingInDvr(PackagerError):
    """The stream has no media at all yet (409): nothing to cut."""

    code = "no_media_in_dvr"


class RangeNotInDvr(PackagerError):
    """The asked range lies wholly outside what the DVR holds (422)."""

    code = "range_not_in_dvr"


class TooLarge(PackagerError):
    code = "too_large"


class RequestTimeout(PackagerError):
    """The client stopped sending its request's body (408)."""

    code = "request_timeout"


class TooEarly(PackagerError):
    code = "too_early"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class BudgetExceeded(PackagerError):
    code = "memory_budget_exceeded"


class LimitReached(PackagerError):
    """A count limit (clips per stream, streams) is reached (429)."""

    code = "limit_reached"


class Overloaded(PackagerError):
    """Too much concurrent work of one kind right now (503)."""

    code = "overloaded"
