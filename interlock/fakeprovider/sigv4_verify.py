"""Verifies AWS SigV4 signatures the way AWS does, independently of botocore (hashlib/hmac only),
so a broken signer in the gateway fails against the fake instead of agreeing with itself."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import parse_qsl, quote

ALGORITHM = "AWS4-HMAC-SHA256"


class SignatureError(ValueError):
    pass


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signature(secret: str, *, method: str, raw_path: str, query: str, headers: Mapping[str, str],
              signed: list[str], body: bytes, amz_date: str, region: str, service: str) -> str:
    """headers: lower-case names. raw_path: the path exactly as sent (already percent-encoded once)."""
    canonical_uri = quote(raw_path, safe="/~")  # non-S3 services encode the encoded path again
    pairs = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in parse_qsl(query, keep_blank_values=True))
    canonical_query = "&".join(f"{k}={v}" for k, v in pairs)
    canonical_headers = "".join(f"{h}:{' '.join(headers.get(h, '').split())}\n" for h in signed)
    canonical = "\n".join([method, canonical_uri, canonical_query, canonical_headers, ";".join(signed),
                           hashlib.sha256(body).hexdigest()])
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(("AWS4" + secret).encode(), amz_date[:8]), region), service), "aws4_request")
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def verify(secret: str, *, method: str, raw_path: str, query: str, headers: Mapping[str, str], body: bytes,
           service: str) -> str:
    """Checks the Authorization header; returns the access key id. headers: lower-case names."""
    auth = headers.get("authorization", "")
    if not auth.startswith(ALGORITHM + " "):
        raise SignatureError("Missing Authentication Token")
    fields = dict(part.strip().split("=", 1) for part in auth[len(ALGORITHM) + 1:].split(",") if "=" in part)
    try:
        akid, date, region, svc, term = fields["Credential"].split("/")
        signed, claimed = fields["SignedHeaders"].split(";"), fields["Signature"]
    except (KeyError, ValueError) as exc:
        raise SignatureError("Authorization header requires Credential, SignedHeaders and Signature") from exc
    amz_date = headers.get("x-amz-date", "")
    if svc != service or term != "aws4_request" or not amz_date.startswith(date) or "host" not in signed:
        raise SignatureError("Credential should be scoped to a valid region, service and date, and sign host")
    expected = signature(secret, method=method, raw_path=raw_path, query=query, headers=headers, signed=signed,
                         body=body, amz_date=amz_date, region=region, service=service)
    if not hmac.compare_digest(expected, claimed):
        raise SignatureError("The request signature we calculated does not match the signature you provided.")
    return akid
