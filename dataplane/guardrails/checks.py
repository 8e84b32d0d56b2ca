"""Validators run on a candidate match only (rare), never on the whole text: checksums, entropy, placeholders."""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter

# Values a developer writes where a real secret would go: never a finding.
_PLACEHOLDERS = frozenset({
    "password", "passwd", "pass", "secret", "changeme", "change_me", "example", "xxxxxx", "xxxxxxxx", "admin",
    "postgres", "root", "user", "test", "testing", "dummy", "placeholder", "redacted", "hunter2", "your_password",
    "yourpassword", "mypassword", "pwd", "none", "null", "undefined", "true", "false", "localhost",
})
_TEMPLATE = re.compile(r"^(?:\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|\{\{.*\}\}|<[^>]*>|%\(?[a-z_]+\)?s?|\*+|x+|\.+|#+)$",
                       re.IGNORECASE)
_IDENT = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*(?:\.[A-Za-z_$][A-Za-z0-9_$]*)*(?:\(\)?)?$")  # code, not a value
_PATHLIKE = re.compile(r"^(?:[./~]|[A-Za-z]:\\)|\.(?:json|ya?ml|txt|pem|key|env|toml|ini|cfg)$")


def entropy(s: str) -> float:
    """Shannon entropy in bits per character."""
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


def _placeholder(v: str) -> bool:
    low = v.lower().strip("\"'")
    return low in _PLACEHOLDERS or bool(_TEMPLATE.match(v)) or low.startswith(("your", "my-", "<", "${", "$(", "env("))


def password_ok(v: str) -> bool:
    """A password in a URL: anything but a placeholder or a template variable."""
    return not _placeholder(v)


def generic_secret_ok(v: str) -> bool:
    """A value assigned to a secret-sounding name: random-looking, not code, not a path, not a placeholder.

    Identifiers (camelCase, snake_case, dotted member access, calls) are code; a real value mixes character
    classes and has high entropy. Short passwords (8-11 chars) need three character classes. Past 256 chars
    it is a blob (minified code, base64 data), not an assigned secret."""
    v = v.rstrip(".,;:")
    if not 8 <= len(v) <= 256 or _placeholder(v) or _PATHLIKE.search(v):
        return False
    # the cheap rejections first (most candidates on source code are identifiers); all of them are "no"
    if v.isdigit() or (v.isalpha() and v.islower()):
        return False
    digit = any(map(str.isdigit, v))
    if not digit and _IDENT.match(v):
        return False  # e.g. password=getPassword, token=self.auth_token
    classes = sum((any(map(str.islower, v)), any(map(str.isupper, v)), digit, not v.isalnum()))
    e = entropy(v)
    if len(v) < 12:
        return classes >= 3 and e >= 2.5
    return classes >= 2 and e >= 3.0


def card_ok(v: str) -> bool:
    digits = [int(c) for c in v if c.isdigit()]
    if not 13 <= len(digits) <= 19 or len(set(digits)) < 2:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0 and digits[0] in (2, 3, 4, 5, 6)


_IBAN_LEN = {"AD": 24, "AT": 20, "BE": 16, "CH": 21, "CZ": 24, "DE": 22, "DK": 18, "ES": 24, "FI": 18, "FR": 27,
             "GB": 22, "GR": 27, "HR": 21, "IE": 22, "IT": 27, "LU": 20, "NL": 18, "NO": 15, "PL": 28, "PT": 25,
             "SE": 24, "SI": 19, "SK": 24}


def iban_ok(v: str) -> bool:
    s = v.replace(" ", "")
    want = _IBAN_LEN.get(s[:2])
    if want is not None and len(s) != want:
        return False
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def ssn_ok(v: str) -> bool:
    area, group, serial = v.split("-")
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def ipv4_ok(v: str) -> bool:
    parts = [int(p) for p in v.split(".")]
    if any(p > 255 for p in parts) or any(len(p) > 1 and p[0] == "0" for p in v.split(".")):
        return False
    # loopback, unspecified, broadcast and private ranges are not personal data
    a, b = parts[0], parts[1]
    return not (a in (0, 10, 127, 255) or (a == 192 and b == 168) or (a == 172 and 16 <= b <= 31))


def phone_ok(v: str) -> bool:
    digits = sum(c.isdigit() for c in v)
    return 10 <= digits <= 15


_FAKE_MARKERS = ("EXAMPLE", "example", "XXXXXX", "xxxxxx", "123456789", "abcdefgh", "ABCDEFGH", "000000", "DUMMY",
                 "dummy", "FAKE", "fake", "sample", "SAMPLE",
                 "sk_test_", "pk_test_", "rk_test_", "whsec_test")  # test-mode keys are meant to be shared


def looks_fake(v: str) -> bool:
    """Documented example keys (AWS's ...EXAMPLE), placeholders and test fixtures are not secrets: a marker
    word, a long run of one character or an ascending run."""
    if any(m in v for m in _FAKE_MARKERS):
        return True
    run = 1
    for a, b in itertools.pairwise(v):
        run = run + 1 if a == b else 1
        if run >= 6:
            return True
    return False
