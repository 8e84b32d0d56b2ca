"""Detection rules, written from each credential's documented format (vendor docs and token-format announcements).

Each rule is one regular expression in the subset RE2 accepts (no lookaround, no backreferences), so the whole
set compiles into one linear-time alternation. `(?P<s>...)` marks the secret inside the match (what is redacted);
without it the whole match is the secret. `check` is a validator run on the (rare) candidate only: entropy for
generic assignments, Luhn for cards, mod-97 for IBANs, placeholder filtering for URLs with passwords.
"""

from __future__ import annotations

from dataclasses import dataclass

from dataplane.guardrails.checks import (
    card_ok,
    generic_secret_ok,
    iban_ok,
    ipv4_ok,
    password_ok,
    phone_ok,
    ssn_ok,
)

_T = r"(?:[^0-9A-Za-z_\-]|$)"  # end of a token whose alphabet includes _ and -
_Q = r"""["']?"""
# KEY = "value", key: value, "key": "value", and Kubernetes/compose env lists (- name: KEY\n  value: "...")
_ASSIGN = r"""["']?(?:\s*[:=]\s*|\s*\n\s*value:\s*)["']?"""
_B64 = "A-Za-z0-9+/"
# a generic secret value: no whitespace, quotes or brackets; the rule also wants one digit or symbol in it, so
# identifiers (getPassword, self.api_key) are not even candidates; length and entropy are the validator's
_V = r"""[^\s"'`,;)(\]\[{}<>]"""
_S = "[0-9!#%^&*+@$~|?=\\-]"
# ... and at least 8 characters (shorter is never a finding, see checks.generic_secret_ok): one symbol at some
# position k, then enough characters to make 8 in all. Said in the pattern, `max_tokens: 4096` or
# `password='hunter2'` are not candidates at all, instead of each costing a validation in Python.
_V8 = "(?:" + "|".join(f"{_V}{{{k}}}{_S}{_V}{{{7 - k},}}" if k else f"{_S}{_V}{{7,}}" for k in range(7)) + \
    f"|{_V}{{7,}}{_S}{_V}*)"  # no `{0}` repeat: Hyperscan has no syntax for it


@dataclass(frozen=True, slots=True)
class Rule:
    id: str  # also the placeholder: [REDACTED:<id>]
    category: str  # "secret" | "pii"
    pattern: str
    check: str = ""  # name of a validator in CHECKS


CHECKS = {
    "generic": generic_secret_ok,
    "password": password_ok,
    "card": card_ok,
    "iban": iban_ok,
    "ssn": ssn_ok,
    "ipv4": ipv4_ok,
    "phone": phone_ok,
}

SECRET_RULES: tuple[Rule, ...] = (
    # AWS: access key ids are 20 chars with a documented 4-letter prefix; the secret key is 40 base64 chars
    # and has no prefix, so it is found by the variable/field names the SDKs and CLI read it from.
    Rule("aws-access-key-id", "secret", r"\b(?P<s>(?:AKIA|ASIA|ABIA|ACCA|AROA|AIDA)[A-Z2-7]{16})\b"),
    Rule("aws-secret-access-key", "secret",
         r"(?i)(?:aws_?secret_?access_?key|aws_?secret_?key|secretaccesskey|aws_secret)" + _ASSIGN
         + rf"(?P<s>[{_B64}]{{40}})(?:[^{_B64}]|$)"),
    Rule("aws-session-token", "secret",
         r"(?i)(?:aws_?session_?token|sessiontoken)" + _ASSIGN + rf"(?P<s>[{_B64}=]{{100,}})"),
    # GCP: a service-account JSON key names its private key id (40 hex); the key itself is the PEM rule
    Rule("gcp-service-account-key-id", "secret", r'"private_key_id"\s*:\s*"(?P<s>[0-9a-f]{40})"'),
    Rule("google-api-key", "secret", r"\b(?P<s>AIza[0-9A-Za-z_\-]{35})" + _T),
    Rule("google-oauth-client-secret", "secret", r"\b(?P<s>GOCSPX-[0-9A-Za-z_\-]{28})" + _T),
    Rule("google-oauth-refresh-token", "secret", r"\b(?P<s>1//0[0-9A-Za-z_\-]{40,})"),
    Rule("google-oauth-access-token", "secret", r"\b(?P<s>ya29\.[0-9A-Za-z_\-]{30,})"),
    # Azure: storage account keys are 64 bytes base64 (88 chars); Entra ID client secrets carry "Q~"
    Rule("azure-storage-account-key", "secret", rf"(?i)AccountKey=(?P<s>[{_B64}]{{86}}==)"),
    Rule("azure-sas-token", "secret", r"[?&]sv=\d{4}-\d\d-\d\d&[^\s\"']*?sig=(?P<s>[0-9A-Za-z%+/]{40,}(?:%3D|=)*)"),
    Rule("azure-entra-client-secret", "secret", r"\b(?P<s>[0-9A-Za-z_~.]{3}\dQ~[0-9A-Za-z_~.\-]{31,34})" + _T),
    Rule("azure-api-key", "secret",
         r"(?i)(?:azure[a-z_]*key|ocp-apim-subscription-key|api-key)" + _ASSIGN + r"(?P<s>[0-9a-f]{32})\b"),
    # GitHub: prefixed tokens (2021 format), fine-grained PATs
    Rule("github-pat", "secret", r"\b(?P<s>ghp_[0-9A-Za-z]{36})\b"),
    Rule("github-oauth-token", "secret", r"\b(?P<s>gho_[0-9A-Za-z]{36})\b"),
    Rule("github-app-token", "secret", r"\b(?P<s>gh[us]_[0-9A-Za-z]{36})\b"),
    Rule("github-refresh-token", "secret", r"\b(?P<s>ghr_[0-9A-Za-z]{36,76})\b"),
    Rule("github-fine-grained-pat", "secret", r"\b(?P<s>github_pat_[0-9A-Za-z]{22}_[0-9A-Za-z]{59})\b"),
    # GitLab
    Rule("gitlab-pat", "secret", r"\b(?P<s>glpat-[0-9A-Za-z_\-]{20,})" + _T),
    Rule("gitlab-runner-token", "secret", r"\b(?P<s>glrt-[0-9A-Za-z_\-]{20,})" + _T),
    Rule("gitlab-pipeline-trigger-token", "secret", r"\b(?P<s>glptt-[0-9a-f]{40})\b"),
    Rule("gitlab-deploy-token", "secret", r"\b(?P<s>gldt-[0-9A-Za-z_\-]{20,})" + _T),
    # Slack
    Rule("slack-bot-token", "secret", r"\b(?P<s>xoxb-\d{8,13}-\d{8,13}-[0-9A-Za-z]{24,})\b"),
    Rule("slack-user-token", "secret", r"\b(?P<s>xox[pe]-\d{8,13}-\d{8,13}-\d{8,13}-[0-9a-f]{32})\b"),
    Rule("slack-app-token", "secret", r"\b(?P<s>xapp-\d-[A-Z0-9]{9,11}-\d{10,13}-[0-9a-f]{64})\b"),
    Rule("slack-webhook-url", "secret",
         r"(?P<s>https://hooks\.slack\.com/(?:services|workflows|triggers)/T[A-Z0-9]{8,10}/[A-Z0-9]{8,12}/"
         r"[0-9A-Za-z]{20,})"),
    # Stripe: live keys only (test keys sk_test_ are meant to be shared in fixtures)
    Rule("stripe-secret-key", "secret", r"\b(?P<s>sk_live_[0-9A-Za-z]{24,99})\b"),
    Rule("stripe-restricted-key", "secret", r"\b(?P<s>rk_live_[0-9A-Za-z]{24,99})\b"),
    Rule("stripe-webhook-secret", "secret", r"\b(?P<s>whsec_[0-9A-Za-z]{32,})\b"),
    # Model providers
    Rule("openai-api-key", "secret",
         r"\b(?P<s>sk-(?:proj-|svcacct-|admin-)?[0-9A-Za-z_\-]{16,}T3BlbkFJ[0-9A-Za-z_\-]{16,})" + _T),
    Rule("openai-project-key", "secret", r"\b(?P<s>sk-(?:proj|svcacct|admin)-[0-9A-Za-z_\-]{80,})" + _T),
    Rule("anthropic-api-key", "secret", r"\b(?P<s>sk-ant-api0\d-[0-9A-Za-z_\-]{80,100})" + _T),
    Rule("anthropic-admin-key", "secret", r"\b(?P<s>sk-ant-admin0\d-[0-9A-Za-z_\-]{80,100})" + _T),
    Rule("huggingface-token", "secret", r"\b(?P<s>hf_[A-Za-z]{34})\b"),
    Rule("groq-api-key", "secret", r"\b(?P<s>gsk_[0-9A-Za-z]{52})\b"),
    Rule("xai-api-key", "secret", r"\b(?P<s>xai-[0-9A-Za-z]{80})\b"),
    # Tokens and keys with a structure of their own
    Rule("jwt", "secret", r"\b(?P<s>eyJ[0-9A-Za-z_\-]{8,}\.eyJ[0-9A-Za-z_\-]{8,}\.[0-9A-Za-z_\-]{16,})"),
    # (not across a NUL: the walk joins a body's strings with one, so no match spans two of them)
    Rule("private-key", "secret",
         r"(?P<s>-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----"
         r"(?:[^\x00]*?-----END [A-Z ]*PRIVATE KEY(?: BLOCK)?-----|[0-9A-Za-z+/=\s\\]{40,}))"),
    Rule("age-secret-key", "secret", r"\b(?P<s>AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58})\b"),
    Rule("database-url-password", "secret",
         r"(?i)\b(?:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|rediss?|amqps?|mssql|sqlserver|clickhouse)"
         r"://[^\s:/@'\"]+:(?P<s>[^\s@/'\"]{3,})@", "password"),
    Rule("url-basic-auth-password", "secret",
         r"(?i)\b(?:https?|ftp|smtp)://[^\s:/@'\"]+:(?P<s>[^\s@/'\"]{6,})@", "password"),
    # Package registries, CI/CD, infrastructure and SaaS
    Rule("npm-token", "secret", r"\b(?P<s>npm_[0-9A-Za-z]{36})\b"),
    Rule("pypi-token", "secret", r"\b(?P<s>pypi-AgE[0-9A-Za-z_\-]{50,})"),
    Rule("docker-hub-pat", "secret", r"\b(?P<s>dckr_pat_[0-9A-Za-z_\-]{27,})" + _T),
    Rule("sendgrid-api-key", "secret", r"\b(?P<s>SG\.[0-9A-Za-z_\-]{22}\.[0-9A-Za-z_\-]{43})" + _T),
    Rule("twilio-api-key", "secret", r"\b(?P<s>SK[0-9a-f]{32})\b"),
    Rule("mailgun-api-key", "secret", r"\b(?P<s>key-[0-9a-f]{32})\b"),
    Rule("digitalocean-token", "secret", r"\b(?P<s>do[opr]_v1_[0-9a-f]{64})\b"),
    Rule("shopify-token", "secret", r"\b(?P<s>shp(?:at|ss|ca|pa)_[0-9a-fA-F]{32})\b"),
    Rule("datadog-api-key", "secret",
         r"(?i)(?:dd|datadog)_?(?:api|app)_?key" + _ASSIGN + r"(?P<s>[0-9a-f]{32,40})\b"),
    Rule("linear-api-key", "secret", r"\b(?P<s>lin_api_[0-9A-Za-z]{40})\b"),
    Rule("databricks-token", "secret", r"\b(?P<s>dapi[0-9a-f]{32}(?:-\d)?)\b"),
    Rule("vault-token", "secret", r"\b(?P<s>hv[sbr]\.[0-9A-Za-z_\-]{24,})" + _T),
    Rule("doppler-token", "secret", r"\b(?P<s>dp\.(?:pt|st|sa|ct)\.[0-9A-Za-z]{40,44})\b"),
    Rule("newrelic-user-key", "secret", r"\b(?P<s>NRAK-[0-9A-Z]{27})\b"),
    Rule("grafana-service-account-token", "secret", r"\b(?P<s>glsa_[0-9A-Za-z]{32}_[0-9a-fA-F]{8})\b"),
    Rule("sentry-auth-token", "secret", r"\b(?P<s>sntrys_eyJ[0-9A-Za-z_\-=+/]{60,})"),
    Rule("telegram-bot-token", "secret", r"\b(?P<s>\d{8,10}:AA[0-9A-Za-z_\-]{33})" + _T),
    Rule("discord-webhook-url", "secret",
         r"(?P<s>https://(?:canary\.|ptb\.)?discord(?:app)?\.com/api/webhooks/\d{17,20}/[0-9A-Za-z_\-]{60,70})"),
    Rule("bearer-token", "secret",
         r"(?i)authorization\s*[:=]\s*[\"']?bearer\s+(?P<s>[0-9A-Za-z._~+/\-]{20,}=*)", "generic"),
    # Generic assignments: the name says secret, the value must look random (entropy, character mix)
    Rule("generic-secret-assignment", "secret",
         r"(?i)(?:password|passwd|pwd|secret|secret_?key|api_?key|apikey|access_?token|auth_?token|client_?secret"
         r"|private_?key|token)[a-z_]{0,12}" + _ASSIGN + rf"(?P<s>{_V8})", "generic"),
)

PII_RULES: tuple[Rule, ...] = (
    Rule("email", "pii", r"\b(?P<s>[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63})*\.[A-Za-z]{2,24})\b"),
    Rule("phone", "pii", r"(?P<s>(?:\+\d{1,3}[ .\-]?)?(?:\(\d{3}\)|\d{3})[ .\-]\d{3}[ .\-]\d{4})\b", "phone"),
    Rule("payment-card", "pii", r"\b(?P<s>\d(?:[ \-]?\d){12,18})\b", "card"),
    Rule("iban", "pii", r"\b(?P<s>[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?)\b", "iban"),
    Rule("us-ssn", "pii", r"\b(?P<s>\d{3}-\d{2}-\d{4})\b", "ssn"),
    Rule("ip-address", "pii", r"\b(?P<s>(?:\d{1,3}\.){3}\d{1,3})\b", "ipv4"),
)

ALL_RULES = {r.id: r for r in (*SECRET_RULES, *PII_RULES)}
