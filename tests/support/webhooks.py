"""A loopback callback receiver that verifies every delivery with the `standardwebhooks` library.

The library is the independent verifier (issue 9): tests never re-implement the signing algorithm, so a
bug shared by our signer and a hand-written check cannot pass unnoticed.
"""

from __future__ import annotations

from collections.abc import Callable

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.support import canary
from tests.support.http_stub import RecordedRequest, StubResponse


def verify(secret: str, request: RecordedRequest):
    """The parsed body if the delivery's Standard Webhooks signature is valid; raises WebhookVerificationError."""
    return Webhook(secret).verify(request.body, dict(request.headers))


class VerifyingReceiver:
    """Verifies each delivery against the App's signing secret, then answers with `inner` (200 by default).

    A delivery that fails verification is answered 400, as a real receiver would, and recorded in `failures`.
    """

    def __init__(self, secret: str, inner: Callable[[RecordedRequest], StubResponse] | None = None):
        self.secret = secret
        self.inner = inner or (lambda request: StubResponse(200, {"ok": True}))
        self.verified: list[object] = []
        self.failures: list[str] = []

    def __call__(self, request: RecordedRequest) -> StubResponse:
        # The body is the platform's output to a third party: the canary scan checks it (not the headers:
        # `Authorization` carries the caller's own callback token to its own receiver, by design).
        canary.scan_text(request.body, f"callback body received at {request.path}")
        try:
            self.verified.append(verify(self.secret, request))
        except WebhookVerificationError as exc:
            self.failures.append(str(exc))
            return StubResponse(400, {"error": "signature"})
        return self.inner(request)


__all__ = ["VerifyingReceiver", "WebhookVerificationError", "verify"]
