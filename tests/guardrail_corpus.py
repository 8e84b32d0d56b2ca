"""Deterministic labelled corpus for the guardrail detectors (issue 12).

True secrets: every type is generated from its documented format with a seeded RNG (never copied from a real
credential) and placed in a realistic carrier: .env, JSON/YAML config, shell history, source code, stack
trace, git diff, a Claude Code Read tool result (line-number prefixes), Codex exec_command output.
Benign: coding-agent requests with hashes, UUIDs, base64 blobs, minified JS, lockfile integrity hashes,
test fixtures with fake-looking keys, camelCase identifiers, placeholders.

    python -m tests.guardrail_corpus          # prints the corpus size per type and carrier
"""

from __future__ import annotations

import base64
import hashlib
import random
import string
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

SEED = 1212
PER_TYPE = 24
BENIGN = 3200

UP = string.ascii_uppercase
LOW = string.ascii_lowercase
DIG = string.digits
ALNUM = UP + LOW + DIG
B64 = ALNUM + "+/"
URLSAFE = ALNUM + "_-"
HEX = "0123456789abcdef"


@dataclass(frozen=True)
class Sample:
    kind: str  # secret type, or "benign:<shape>"
    carrier: str
    body: dict[str, Any]  # a coding-agent request
    secret: str = ""  # the value that must not survive redaction


def _r(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _pem(rng: random.Random, kind: str) -> str:
    body = base64.b64encode(rng.randbytes(rng.choice((600, 900, 1190)))).decode()
    lines = "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN {kind}PRIVATE KEY-----\n{lines}\n-----END {kind}PRIVATE KEY-----"


def _password(rng: random.Random) -> str:
    n = rng.randint(8, 20)
    chars = [rng.choice(LOW), rng.choice(UP), rng.choice(DIG), rng.choice("!#%^&*_-+@$")]
    chars += [rng.choice(ALNUM + "!#%^&*_-+") for _ in range(n - 4)]
    rng.shuffle(chars)
    return "".join(chars)


# type -> (secret generator, how it is assigned in a config: NAME, or "" when the value stands alone)
Gen = Callable[[random.Random], str]
SECRETS: dict[str, tuple[Gen, str]] = {
    "aws-access-key-id": (lambda r: r.choice(("AKIA", "ASIA")) + _r(r, UP + "234567", 16), "AWS_ACCESS_KEY_ID"),
    "aws-secret-access-key": (lambda r: _r(r, B64, 40), "AWS_SECRET_ACCESS_KEY"),
    "aws-session-token": (lambda r: "IQoJb3JpZ2luX2Vj" + _r(r, B64, 300), "AWS_SESSION_TOKEN"),
    "gcp-service-account-key-id": (lambda r: _r(r, HEX, 40), "private_key_id"),
    "google-api-key": (lambda r: "AIza" + _r(r, URLSAFE, 35), "GOOGLE_API_KEY"),
    "google-oauth-client-secret": (lambda r: "GOCSPX-" + _r(r, URLSAFE, 28), "GOOGLE_CLIENT_SECRET"),
    "google-oauth-refresh-token": (lambda r: "1//0" + _r(r, URLSAFE, 99), "refresh_token"),
    "google-oauth-access-token": (lambda r: "ya29.a0" + _r(r, URLSAFE, 150), "access_token"),
    "azure-storage-account-key": (lambda r: base64.b64encode(r.randbytes(64)).decode(), "AccountKey"),
    "azure-sas-token": (lambda r: _r(r, ALNUM, 43) + "%3D", "sig"),
    "azure-entra-client-secret": (lambda r: _r(r, ALNUM, 3) + r.choice(DIG) + "Q~" + _r(r, ALNUM + "_~.-", 34),
                                  "AZURE_CLIENT_SECRET"),
    "azure-api-key": (lambda r: _r(r, HEX, 32), "AZURE_OPENAI_API_KEY"),
    "github-pat": (lambda r: "ghp_" + _r(r, ALNUM, 36), "GITHUB_TOKEN"),
    "github-oauth-token": (lambda r: "gho_" + _r(r, ALNUM, 36), "GH_OAUTH_TOKEN"),
    "github-app-token": (lambda r: r.choice(("ghu_", "ghs_")) + _r(r, ALNUM, 36), "GH_APP_TOKEN"),
    "github-refresh-token": (lambda r: "ghr_" + _r(r, ALNUM, 76), "GH_REFRESH_TOKEN"),
    "github-fine-grained-pat": (lambda r: "github_pat_" + _r(r, ALNUM, 22) + "_" + _r(r, ALNUM, 59), "GH_TOKEN"),
    "gitlab-pat": (lambda r: "glpat-" + _r(r, URLSAFE, 20), "GITLAB_TOKEN"),
    "gitlab-runner-token": (lambda r: "glrt-" + _r(r, URLSAFE, 20), "RUNNER_TOKEN"),
    "gitlab-pipeline-trigger-token": (lambda r: "glptt-" + _r(r, HEX, 40), "TRIGGER_TOKEN"),
    "gitlab-deploy-token": (lambda r: "gldt-" + _r(r, URLSAFE, 20), "DEPLOY_TOKEN"),
    "slack-bot-token": (lambda r: f"xoxb-{_r(r, DIG, 12)}-{_r(r, DIG, 13)}-{_r(r, ALNUM, 24)}", "SLACK_BOT_TOKEN"),
    "slack-user-token": (lambda r: f"xoxp-{_r(r, DIG, 12)}-{_r(r, DIG, 12)}-{_r(r, DIG, 13)}-{_r(r, HEX, 32)}",
                         "SLACK_USER_TOKEN"),
    "slack-app-token": (lambda r: f"xapp-1-A{_r(r, UP + DIG, 10)}-{_r(r, DIG, 13)}-{_r(r, HEX, 64)}", "SLACK_APP_TOKEN"),
    "slack-webhook-url": (lambda r: f"https://hooks.slack.com/services/T{_r(r, UP + DIG, 8)}/B{_r(r, UP + DIG, 10)}/"
                                    f"{_r(r, ALNUM, 24)}", "SLACK_WEBHOOK"),
    "stripe-secret-key": (lambda r: "sk_live_" + _r(r, ALNUM, 99), "STRIPE_SECRET_KEY"),
    "stripe-restricted-key": (lambda r: "rk_live_" + _r(r, ALNUM, 99), "STRIPE_RESTRICTED_KEY"),
    "stripe-webhook-secret": (lambda r: "whsec_" + _r(r, ALNUM, 32), "STRIPE_WEBHOOK_SECRET"),
    "openai-api-key": (lambda r: "sk-proj-" + _r(r, URLSAFE, 74) + "T3BlbkFJ" + _r(r, URLSAFE, 74), "OPENAI_API_KEY"),
    "openai-project-key": (lambda r: "sk-svcacct-" + _r(r, URLSAFE, 120), "OPENAI_KEY"),
    "anthropic-api-key": (lambda r: "sk-ant-api03-" + _r(r, URLSAFE, 93) + "AA", "ANTHROPIC_API_KEY"),
    "anthropic-admin-key": (lambda r: "sk-ant-admin01-" + _r(r, URLSAFE, 93) + "AA", "ANTHROPIC_ADMIN_KEY"),
    "huggingface-token": (lambda r: "hf_" + _r(r, UP + LOW, 34), "HF_TOKEN"),
    "groq-api-key": (lambda r: "gsk_" + _r(r, ALNUM, 52), "GROQ_API_KEY"),
    "xai-api-key": (lambda r: "xai-" + _r(r, ALNUM, 80), "XAI_API_KEY"),
    "jwt": (lambda r: _b64url(orjson.dumps({"alg": "RS256", "typ": "JWT", "kid": _r(r, HEX, 16)})) + "."
            + _b64url(orjson.dumps({"sub": str(uuid.UUID(int=r.getrandbits(128))), "iat": r.randint(1_600_000_000, 1_800_000_000),
                                    "scope": "read write", "iss": "https://auth.acme.dev/"})) + "."
            + _b64url(r.randbytes(256)), "SESSION_JWT"),
    "private-key": (lambda r: _pem(r, r.choice(("", "RSA ", "EC ", "OPENSSH "))), ""),
    "age-secret-key": (lambda r: "AGE-SECRET-KEY-1" + _r(r, "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 58), "AGE_KEY"),
    "database-url-password": (lambda r: _password(r).replace("@", "x").replace("/", "y"), "DATABASE_URL"),
    "url-basic-auth-password": (lambda r: _password(r).replace("@", "x").replace("/", "y"), "ARTIFACTORY_URL"),
    "npm-token": (lambda r: "npm_" + _r(r, ALNUM, 36), "NPM_TOKEN"),
    "pypi-token": (lambda r: "pypi-AgEIcHlwaS5vcmc" + _r(r, URLSAFE, 140), "TWINE_PASSWORD"),
    "docker-hub-pat": (lambda r: "dckr_pat_" + _r(r, URLSAFE, 27), "DOCKERHUB_TOKEN"),
    "sendgrid-api-key": (lambda r: f"SG.{_r(r, URLSAFE, 22)}.{_r(r, URLSAFE, 43)}", "SENDGRID_API_KEY"),
    "twilio-api-key": (lambda r: "SK" + _r(r, HEX, 32), "TWILIO_API_KEY"),
    "mailgun-api-key": (lambda r: "key-" + _r(r, HEX, 32), "MAILGUN_API_KEY"),
    "digitalocean-token": (lambda r: "dop_v1_" + _r(r, HEX, 64), "DIGITALOCEAN_TOKEN"),
    "shopify-token": (lambda r: "shpat_" + _r(r, HEX, 32), "SHOPIFY_ACCESS_TOKEN"),
    "datadog-api-key": (lambda r: _r(r, HEX, 32), "DD_API_KEY"),
    "linear-api-key": (lambda r: "lin_api_" + _r(r, ALNUM, 40), "LINEAR_API_KEY"),
    "databricks-token": (lambda r: "dapi" + _r(r, HEX, 32), "DATABRICKS_TOKEN"),
    "vault-token": (lambda r: "hvs." + _r(r, URLSAFE, 90), "VAULT_TOKEN"),
    "doppler-token": (lambda r: "dp.pt." + _r(r, ALNUM, 43), "DOPPLER_TOKEN"),
    "newrelic-user-key": (lambda r: "NRAK-" + _r(r, UP + DIG, 27), "NEW_RELIC_API_KEY"),
    "grafana-service-account-token": (lambda r: "glsa_" + _r(r, ALNUM, 32) + "_" + _r(r, HEX, 8), "GRAFANA_TOKEN"),
    "sentry-auth-token": (lambda r: "sntrys_" + _b64url(orjson.dumps({"iat": r.randint(1, 10**9),
                                                                      "url": "https://sentry.io",
                                                                      "org": _r(r, LOW, 8)})) + "_" + _r(r, URLSAFE, 43),
                          "SENTRY_AUTH_TOKEN"),
    "telegram-bot-token": (lambda r: f"{_r(r, DIG, 10)}:AA{_r(r, URLSAFE, 33)}", "TELEGRAM_BOT_TOKEN"),
    "discord-webhook-url": (lambda r: f"https://discord.com/api/webhooks/{_r(r, DIG, 19)}/{_r(r, URLSAFE, 68)}",
                            "DISCORD_WEBHOOK"),
    "bearer-token": (lambda r: _r(r, URLSAFE, 48), "Authorization"),
    "generic-secret-assignment": (_password, "DB_PASSWORD"),
}


def _value_in_config(kind: str, name: str, secret: str, rng: random.Random) -> str:
    """NAME=value as this type really appears (connection strings and URLs carry the secret inside)."""
    user = rng.choice(("app", "svc_api", "deploy", "admin_rw", "etl"))
    host = rng.choice(("db.internal", "10.2.3.4", "prod-pg.acme.dev", "cluster0.x1y2z.mongodb.net"))
    if kind == "database-url-password":
        scheme = rng.choice(("postgres", "postgresql", "mysql", "mongodb+srv", "redis"))
        return f"{scheme}://{user}:{secret}@{host}:5432/app"
    if kind == "url-basic-auth-password":
        return f"https://{user}:{secret}@artifacts.acme.dev/repository/pypi/simple"
    if kind == "azure-storage-account-key":
        return (f"DefaultEndpointsProtocol=https;AccountName=acme{rng.randint(1, 99)};AccountKey={secret};"
                "EndpointSuffix=core.windows.net")
    if kind == "azure-sas-token":
        return (f"https://acme.blob.core.windows.net/backups?sv=2022-11-02&ss=b&srt=co&sp=rl"
                f"&se=2026-01-01T00:00:00Z&spr=https&sig={secret}")
    if kind == "bearer-token":
        return f"Bearer {secret}"
    return secret


def _carrier(kind: str, name: str, secret: str, rng: random.Random, carrier: str) -> str:
    value = _value_in_config(kind, name, secret, rng)
    ident = name or "KEY"
    if kind == "gcp-service-account-key-id":
        sa = {"type": "service_account", "project_id": "acme-prod", "private_key_id": secret,
              "private_key": _pem(rng, ""), "client_email": "ci@acme-prod.iam.gserviceaccount.com",
              "client_id": _r(rng, DIG, 21), "token_uri": "https://oauth2.googleapis.com/token"}
        text = orjson.dumps(sa, option=orjson.OPT_INDENT_2).decode()
        carrier = "json"
    elif kind == "private-key":
        text = value
    elif kind == "bearer-token":
        text = f'curl -s -H "Authorization: {value}" https://api.acme.dev/v2/orders'
    elif carrier == "env":
        text = f"# generated\nNODE_ENV=production\nPORT=8080\n{ident}={value}\nLOG_LEVEL=info\n"
    elif carrier == "json":
        text = orjson.dumps({"service": "billing", "env": "prod", ident.lower(): value, "retries": 3},
                            option=orjson.OPT_INDENT_2).decode()
    elif carrier == "yaml":
        text = f"service: billing\nenv:\n  - name: {ident}\n    value: \"{value}\"\n  - name: PORT\n    value: \"8080\"\n"
    elif carrier == "shell":
        text = f"  501  cd ~/src/billing\n  502  export {ident}={value}\n  503  npm run deploy\n"
    elif carrier == "source":
        text = (f"import os\n\n# TODO move to vault\n{ident} = \"{value}\"\n\n"
                f"def client():\n    return Client(key={ident}, timeout=30)\n")
    elif carrier == "stacktrace":
        text = (f"Traceback (most recent call last):\n  File \"app/worker.py\", line 88, in run\n"
                f"    resp = session.post(url, headers=headers)\nrequests.exceptions.HTTPError: 401 Client Error "
                f"for url https://api.acme.dev/v1/charge (config: {ident}={value})\n")
    elif carrier == "gitdiff":
        text = (f"diff --git a/config/settings.py b/config/settings.py\n--- a/config/settings.py\n"
                f"+++ b/config/settings.py\n@@ -10,3 +10,4 @@\n DEBUG = False\n+{ident} = '{value}'\n"
                f" TIMEZONE = 'UTC'\n")
    elif carrier == "codex":
        out = f"{ident}={value}\nPATH=/usr/bin\n"
        text = orjson.dumps({"output": f"Exit code: 0\nWall time: 0.1 seconds\nOutput:\n{out}",
                             "metadata": {"exit_code": 0}}).decode()
    else:
        text = f"{ident}={value}"
    if carrier == "claude_read" or kind == "private-key":
        text = "\n".join(f"{i + 1:6d}\t{line}" for i, line in enumerate(text.split("\n")))
    return text


CARRIERS = ("env", "json", "yaml", "shell", "source", "stacktrace", "gitdiff", "claude_read", "codex")


def _request(text: str, rng: random.Random, shape: int) -> dict[str, Any]:
    """The text as a tool result in one of the dialects' request shapes."""
    if shape == 0:  # Anthropic messages (Claude Code)
        return {"model": "claude-sonnet-4-5", "max_tokens": 4096, "system": [{"type": "text", "text": "You are Claude Code."}],
                "messages": [{"role": "user", "content": "look at the config"},
                             {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01", "name": "Read",
                                                                "input": {"file_path": "/repo/.env"}}]},
                             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01",
                                                           "content": text}]}]}
    if shape == 1:  # OpenAI Responses (Codex)
        return {"model": "gpt-5-codex", "instructions": "You are Codex.", "input": [
            {"type": "function_call", "call_id": "call_1", "name": "exec_command", "arguments": '{"cmd":"cat .env"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": text}]}
    if shape == 2:  # Gemini (Gemini CLI)
        return {"contents": [{"role": "user", "parts": [{"text": "check this"}]},
                             {"role": "user", "parts": [{"functionResponse": {"name": "read_file",
                                                                              "response": {"output": text}}}]}]}
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": f"why does this fail?\n```\n{text}\n```"}]}


def secret_samples(seed: int = SEED) -> list[Sample]:
    rng = random.Random(seed)
    out = []
    for kind, (gen, name) in SECRETS.items():
        for i in range(PER_TYPE):
            secret = gen(rng)
            carrier = CARRIERS[(i + len(kind)) % len(CARRIERS)]
            text = _carrier(kind, name, secret, rng, carrier)
            out.append(Sample(kind, carrier, _request(text, rng, i % 4), secret))
    return out


# ---- benign

_WORDS = ("user", "order", "invoice", "payment", "session", "token", "cache", "handler", "request", "response",
          "config", "client", "server", "retry", "backoff", "timeout", "secret", "password", "key", "auth")


def _camel(rng: random.Random, n: int = 3) -> str:
    w = rng.sample(_WORDS, n)
    return w[0] + "".join(x.capitalize() for x in w[1:])


def _benign_text(rng: random.Random, shape: str) -> str:
    h = hashlib.sha256(rng.randbytes(16)).hexdigest()
    u = str(uuid.UUID(int=rng.getrandbits(128)))
    if shape == "source":
        fn = _camel(rng)
        return (f"export async function {fn}({_camel(rng, 2)}: string) {{\n"
                f"  const {_camel(rng, 2)} = await fetch(`/api/v1/orders/${{id}}`);\n"
                f"  const password = await getPassword(user);\n  const apiKey = process.env.API_KEY;\n"
                f"  const secretKey = config.secretKey ?? defaults.secretKey;\n"
                f"  // sha256 {h}\n  return {{ id: '{u}', token: req.headers.authorization }};\n}}\n")
    if shape == "lockfile":
        integ = base64.b64encode(rng.randbytes(64)).decode()
        return (f'    "node_modules/{_camel(rng, 1)}-{_camel(rng, 1).lower()}": {{\n      "version": "{rng.randint(1, 9)}.'
                f'{rng.randint(0, 20)}.{rng.randint(0, 9)}",\n      "resolved": "https://registry.npmjs.org/x/-/x-1.2.3.tgz",\n'
                f'      "integrity": "sha512-{integ}",\n      "dev": true\n    }},\n')
    if shape == "minified":
        return ("!function(e,t){\"object\"==typeof exports?module.exports=t():e.lib=t()}(this,function(){var "
                + ",".join(f"{_r(rng, LOW, 1)}{rng.randint(0, 9)}=function(n){{return n.{_camel(rng, 2)}({_r(rng, LOW, 1)})}}"
                           for _ in range(12)) + f";return{{v:\"{h[:12]}\"}}}});")
    if shape == "base64":
        blob = base64.b64encode(rng.randbytes(rng.randint(60, 600))).decode()
        return f"const logo = \"data:image/png;base64,{blob}\";\nconst fixture = '{base64.b64encode(rng.randbytes(45)).decode()}';\n"
    if shape == "fixtures":  # fake-looking keys in tests: documented examples, placeholders, test-mode keys
        return rng.choice((
            "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\nAWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
            f"stripe.api_key = 'sk_test_{_r(rng, ALNUM, 24)}'\n",
            "GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n",
            "OPENAI_API_KEY=sk-...\nANTHROPIC_API_KEY=<your-key>\n",
            "DATABASE_URL=postgres://postgres:postgres@localhost:5432/test\n",
            "password: ${DB_PASSWORD}\napi_key: {{ .Values.apiKey }}\n",
            f"def test_login():\n    assert login('alice', password='hunter2')\n    token = make_token(user_id={rng.randint(1, 99)})\n",
            "SECRET_KEY = os.environ['SECRET_KEY']\nPASSWORD = get_secret('db/password')\n",
        ))
    if shape == "gitlog":
        return "\n".join(f"commit {hashlib.sha1(rng.randbytes(8)).hexdigest()}\nAuthor: Dev <dev@example.invalid>\n\n"
                         f"    fix {_camel(rng)} handling ({u[:8]})" for _ in range(3))
    if shape == "uuids":
        return "\n".join(f"{uuid.UUID(int=rng.getrandbits(128))!s},{_camel(rng)},{rng.randint(0, 10**6)},{h[:40]}"
                         for _ in range(8))
    if shape == "docker":
        return (f"FROM python:3.11-slim@sha256:{h}\nRUN pip install --no-cache-dir -r requirements.txt\n"
                f"ENV PIP_DISABLE_PIP_VERSION_CHECK=1\nCMD [\"gunicorn\", \"app:create_app()\"]\n")
    if shape == "k8s":
        return (f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: {_camel(rng, 2).lower()}\ntype: Opaque\n"
                f"data:\n  password: {{{{ .Values.password | b64enc }}}}\n  uid: {u}\n")
    return f"Refactor {_camel(rng)} to use {_camel(rng)}; checksum {h}, build {u}."


BENIGN_SHAPES = ("source", "lockfile", "minified", "base64", "fixtures", "gitlog", "uuids", "docker", "k8s", "prose")


def benign_samples(seed: int = SEED, n: int = BENIGN) -> list[Sample]:
    rng = random.Random(seed + 1)
    out = []
    for i in range(n):
        shape = BENIGN_SHAPES[i % len(BENIGN_SHAPES)]
        text = "\n".join(_benign_text(rng, shape) for _ in range(rng.randint(1, 4)))
        out.append(Sample(f"benign:{shape}", shape, _request(text, rng, i % 4)))
    return out


def main() -> None:
    secrets, benign = secret_samples(), benign_samples()
    print(f"{len(secrets)} true secrets of {len(SECRETS)} types; {len(benign)} benign requests")
    print("carriers:", dict(Counter(s.carrier for s in secrets)))
    print("benign shapes:", dict(Counter(s.carrier for s in benign)))


if __name__ == "__main__":
    main()
