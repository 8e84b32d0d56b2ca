"""AWS Signature Version 4 over the exact bytes we send, using botocore's signer.

botocore is AWS's own implementation (canonicalisation, double-encoded paths, session tokens);
we only inject the clock, so signing is deterministic under test and checkable against AWS's
published test vectors."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from .base import ProviderConfigError


@dataclass(frozen=True)
class AwsCredentials:
    access_key_id: str
    secret_access_key: str = ""
    session_token: str | None = None

    def __repr__(self) -> str:  # never print the secret
        return f"AwsCredentials(access_key_id={self.access_key_id!r}, secret_access_key='***')"


def parse_credentials(secret: str) -> AwsCredentials:
    """The credential ref's content: JSON as printed by `aws configure export-credentials` /
    `aws sts assume-role` (AccessKeyId, SecretAccessKey, SessionToken; or a `Credentials` object holding
    them), or `ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]`."""
    text = secret.strip()
    if text.startswith("{"):
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ProviderConfigError("the AWS credential is not valid JSON") from exc
        doc = doc.get("Credentials", doc) if isinstance(doc, dict) else {}
        akid, sak, token = doc.get("AccessKeyId"), doc.get("SecretAccessKey"), doc.get("SessionToken")
    else:
        akid, _, rest = text.partition(":")
        sak, _, token = rest.partition(":")
    if not isinstance(akid, str) or not akid or not isinstance(sak, str) or not sak:
        raise ProviderConfigError(
            "the AWS credential must hold an access key id and a secret access key "
            "(JSON with AccessKeyId/SecretAccessKey[/SessionToken], or AKID:SECRET[:TOKEN])"
        )
    return AwsCredentials(akid, sak, token if isinstance(token, str) and token else None)


class _ClockedSigV4Auth(SigV4Auth):
    """botocore's SigV4Auth with an injected clock (its add_auth reads the wall clock itself)."""

    def __init__(self, credentials: Credentials, service: str, region: str, clock: Callable[[], float]):
        super().__init__(credentials, service, region)
        self._clock = clock

    def add_auth(self, request: AWSRequest) -> None:
        request.context["timestamp"] = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._clock()))
        self._modify_request_before_signing(request)
        canonical = self.canonical_request(request)
        self._inject_signature_to_request(request, self.signature(self.string_to_sign(request, canonical), request))


class SigV4Signer:
    def __init__(self, creds: AwsCredentials, region: str, service: str, clock: Callable[[], float] = time.time):
        self._auth = _ClockedSigV4Auth(
            Credentials(creds.access_key_id, creds.secret_access_key, creds.session_token), service, region, clock
        )

    def sign(self, method: str, url: str, headers: Iterable[tuple[str, str]], body: bytes) -> list[tuple[str, str]]:
        """The headers to send: the given ones plus x-amz-date, [x-amz-security-token,] authorization."""
        req = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
        self._auth.add_auth(req)
        return list(req.headers.items())

    def __repr__(self) -> str:
        return "SigV4Signer(***)"
