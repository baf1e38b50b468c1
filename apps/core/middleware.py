"""Request limits at the door (SPEC.md section 12), for every view, DRF or plain Django.

A body whose Content-Length is over the limit is answered 413 before any view, parser or middleware
reads it. Multipart bodies carry uploads and get the upload allowance (files are then checked one by
one by apps.runs.files); every other body gets DATA_UPLOAD_MAX_MEMORY_SIZE. Bodies without a
Content-Length are bounded where they are read (apps.core.parsers, Django's own form limits).
"""

from __future__ import annotations

from django.conf import settings

from .errors import error_response


def max_multipart_bytes() -> int:
    # A multipart request holds at most MAX_FILES_PER_REQUEST files, plus room for its fields and envelope.
    return settings.MAX_UPLOAD_BYTES * settings.MAX_FILES_PER_REQUEST + settings.DATA_UPLOAD_MAX_MEMORY_SIZE


class RequestLimitsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return error_response("bad_request", "Invalid Content-Length.", 400)
        multipart = (request.META.get("CONTENT_TYPE") or "").lower().startswith("multipart/")
        limit = max_multipart_bytes() if multipart else settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if length > limit:
            return error_response("payload_too_large", f"The request body is larger than {limit} bytes.", 413,
                                  {"body": [f"at most {limit} bytes"]})
        return self.get_response(request)
