"""`interlock dev`: control plane, data plane, fake provider and usage store in one process.

No etcd, Kafka or ClickHouse server: policy lives in an embedded SQLite store
and usage events go straight into ClickHouse's engine in-process (chDB), all
under one data directory. Real provider keys found in the environment are used;
otherwise built-in models are served by the bundled fake provider.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from controlplane.policy.model import Alias, Model, PolicyDocument, Price, Project, Provider, Team, User
from controlplane.service_types import KeySpec, PolicyService
from interlock_contracts.credential_refs import DEFAULT_DIRS, CredentialRules

DEV_TEAM, DEV_USER, DEV_PROJECT = "dev", "you", "sandbox"
FAKE_GPT, FAKE_CLAUDE = "interlock-dev-gpt", "interlock-dev-claude"


@dataclass(frozen=True)
class DevSecrets:
    key_pepper: bytes
    admin_token: str
    provider_key_path: Path  # credential the fake provider is addressed with (a file: reference, like production)


def _secret_file(path: Path, make: int = 32) -> bytes:
    """Read a secret file, creating it (0600) with fresh random bytes on first run."""
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = secrets.token_urlsafe(make).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(value)
    return value


def load_secrets(data_dir: Path) -> DevSecrets:
    sdir = data_dir / "secrets"
    # Provider credentials live apart from the gateway's own secrets: the credential rules allow this directory
    # (dev_credential_rules), never the one holding the key pepper.
    cdir = data_dir / "credentials"
    _secret_file(cdir / "fake-provider-key")
    return DevSecrets(
        key_pepper=_secret_file(sdir / "key-pepper"),
        admin_token="adm-" + _secret_file(sdir / "admin-token").decode(),
        provider_key_path=(cdir / "fake-provider-key").resolve(),
    )


def dev_credential_rules(data_dir: Path) -> CredentialRules:
    return CredentialRules(dirs=((data_dir / "credentials").resolve(), *DEFAULT_DIRS))


def bootstrap_policy(fake_base_url: str, provider_key_path: Path, env: Mapping[str, str]) -> PolicyDocument:
    """The first-run policy: fake models always; real OpenAI/Anthropic models when their keys are set."""
    cred = f"file:{provider_key_path}"
    providers = [
        Provider(name="fake-openai", kind="openai_compatible", base_url=f"{fake_base_url}/v1", credential=cred),
        Provider(name="fake-anthropic", kind="anthropic", base_url=fake_base_url, credential=cred),
    ]
    models = [
        Model(name=FAKE_GPT, provider="fake-openai", price=Price(input="0.15", output="0.60", cached_input="0.075")),
        Model(name=FAKE_CLAUDE, provider="fake-anthropic", price=Price(input="3", output="15", cached_input="0.30")),
    ]
    aliases = [Alias(name="dev-fast", target=FAKE_GPT), Alias(name="dev-smart", target=FAKE_CLAUDE)]
    if env.get("OPENAI_API_KEY"):
        providers.append(Provider(name="openai", kind="openai", base_url="https://api.openai.com/v1", credential="env:OPENAI_API_KEY"))
        models += [
            Model(name="gpt-4.1", provider="openai", price=Price(input="2", output="8", cached_input="0.5")),
            Model(name="gpt-4.1-mini", provider="openai", price=Price(input="0.4", output="1.6", cached_input="0.1")),
        ]
    if env.get("ANTHROPIC_API_KEY"):
        providers.append(Provider(name="anthropic", kind="anthropic", base_url="https://api.anthropic.com", credential="env:ANTHROPIC_API_KEY"))
        models += [
            Model(name="claude-sonnet-4-5", provider="anthropic", price=Price(input="3", output="15", cached_input="0.3")),
            Model(name="claude-haiku-4-5", provider="anthropic", price=Price(input="1", output="5", cached_input="0.1")),
        ]
    return PolicyDocument(
        providers=providers, models=models, aliases=aliases,
        teams=[Team(id=DEV_TEAM, name="Local development")],
        users=[User(id=DEV_USER, team=DEV_TEAM)], projects=[Project(id=DEV_PROJECT, team=DEV_TEAM)],
    )


async def ensure_policy_and_key(service: PolicyService, data_dir: Path, fake_base_url: str, secrets_: DevSecrets,
                                env: Mapping[str, str]) -> str:
    """Apply the bootstrap policy on first run and return the dev virtual key (kept in the data dir)."""
    doc, _ = await service.get_document()
    if not doc.providers:
        await service.apply(bootstrap_policy(fake_base_url, secrets_.provider_key_path, env))
    else:
        # The fake provider may come up on another port than last run, and data dirs made before provider
        # credentials moved out of secrets/ (credential-ref rules) still name the old file; keep other edits.
        wanted = {"fake-openai": f"{fake_base_url}/v1", "fake-anthropic": fake_base_url}
        cred = f"file:{secrets_.provider_key_path}"
        providers = [p.model_copy(update={"base_url": wanted[p.name], "credential": cred}) if p.name in wanted else p
                     for p in doc.providers]
        if providers != doc.providers:
            await service.apply(doc.model_copy(update={"providers": providers}))
    key_file = data_dir / "secrets" / "dev-virtual-key"
    if key_file.exists():
        return key_file.read_text().strip()
    created = await service.create_key(KeySpec(name="dev", team=DEV_TEAM, user=DEV_USER, project=DEV_PROJECT))
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(created.secret)
    return created.secret


def banner(*, gateway: str, admin: str, admin_token: str, vkey: str, data_dir: Path, models: list[str]) -> str:
    return f"""
Interlock dev gateway is running.

  gateway (OpenAI/Anthropic/Gemini)  {gateway}
  admin API (/openapi.json)          {admin}
  data directory                     {data_dir}
  models                             {", ".join(models)}

  export INTERLOCK_ADMIN_URL={admin}
  export INTERLOCK_ADMIN_TOKEN={admin_token}
  export INTERLOCK_KEY={vkey}      # dev virtual key (kept in {data_dir}/secrets, 0600)

Try it:
  curl -s {gateway}/v1/chat/completions -H "Authorization: Bearer $INTERLOCK_KEY" \\
       -H 'content-type: application/json' \\
       -d '{{"model":"{FAKE_GPT}","messages":[{{"role":"user","content":"hello"}}]}}'

  pip install -q openai    # the official OpenAI SDK: a client of the gateway, not an interlock dependency
  python -c 'import openai; c=openai.OpenAI(base_url="{gateway}/v1", api_key="'$INTERLOCK_KEY'");\\
print(c.chat.completions.create(model="{FAKE_GPT}", messages=[{{"role":"user","content":"hi"}}]).choices[0].message.content)'

  ANTHROPIC_BASE_URL={gateway} ANTHROPIC_API_KEY=$INTERLOCK_KEY CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 \\
  ANTHROPIC_MODEL={FAKE_CLAUDE} ANTHROPIC_DEFAULT_HAIKU_MODEL={FAKE_CLAUDE} claude      # more clients: README 'Clients'

  interlock models list      interlock keys list      interlock status

Ctrl-C stops everything; state persists in {data_dir}.
"""
