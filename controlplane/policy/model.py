"""Declarative policy documents and stored records.

`PolicyDocument` is what `interlock apply -f policy.yaml` sends: providers,
models, aliases, teams, users, projects. Virtual keys are not declarative
(their secrets are shown once), they are `KeyRecord`s managed by the keys API.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}$"
ID_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
Name = Annotated[str, Field(pattern=NAME_RE)]
Ident = Annotated[str, Field(pattern=ID_RE)]
CREDENTIAL_RE = re.compile(r"^(env:[A-Za-z_][A-Za-z0-9_]*|file:/.+)?$")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Provider(_Frozen):
    name: Name
    kind: str = "openai"
    base_url: str
    credential: str = ""
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_ms: int = Field(default=600_000, ge=100, le=3_600_000)

    @field_validator("credential")
    @classmethod
    def _credential_is_reference(cls, v: str) -> str:
        if not CREDENTIAL_RE.match(v):
            raise ValueError(
                "credential must be a reference like 'env:OPENAI_API_KEY' or 'file:/run/secrets/openai', "
                "never the key itself"
            )
        return v

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return v.rstrip("/")


def _decimal(v: object) -> str:
    try:
        d = Decimal(str(v))
    except InvalidOperation as exc:
        raise ValueError(f"not a decimal number: {v!r}") from exc
    if d < 0 or not d.is_finite():
        raise ValueError("price must be a finite, non-negative number")
    return format(d.normalize(), "f")


class Price(_Frozen):
    """USD per 1M tokens, kept as exact decimal strings."""

    input: str = "0"
    output: str = "0"
    cached_input: str | None = None

    @field_validator("input", "output", "cached_input", mode="before")
    @classmethod
    def _exact(cls, v: object) -> str | None:
        return None if v is None else _decimal(v)


class Model(_Frozen):
    name: Name
    provider: Name
    upstream: str | None = None
    price: Price = Field(default_factory=Price)
    max_output_tokens: int = Field(default=0, ge=0)
    context_window: int = Field(default=0, ge=0)


class Alias(_Frozen):
    name: Name
    target: Name


class Team(_Frozen):
    id: Ident
    name: str = ""
    allowed_models: list[Name] = Field(default_factory=list)
    default_tags: dict[str, str] = Field(default_factory=dict)
    required_tags: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]] = Field(default_factory=list)


class User(_Frozen):
    id: Ident
    team: Ident
    name: str = ""


class Project(_Frozen):
    id: Ident
    team: Ident
    name: str = ""


class PolicyDocument(_Frozen):
    """The declarative part of policy (everything but virtual keys)."""

    providers: list[Provider] = Field(default_factory=list)
    models: list[Model] = Field(default_factory=list)
    aliases: list[Alias] = Field(default_factory=list)
    teams: list[Team] = Field(default_factory=list)
    users: list[User] = Field(default_factory=list)
    projects: list[Project] = Field(default_factory=list)


class KeyRecord(_Frozen):
    """A stored virtual key. `key_hash` is hex HMAC-SHA256; the secret is never stored."""

    id: str
    key_hash: str
    name: str = ""
    hint: str = ""
    team: str = ""
    user: str = ""
    project: str = ""
    allowed_models: list[str] = Field(default_factory=list)
    expires_at_unix_ms: int = 0
    revoked: bool = False
    revoked_at_unix_ms: int = 0
    created_at_unix_ms: int = 0
    default_tags: dict[str, str] = Field(default_factory=dict)
    parent: str = ""


SectionName = Literal["providers", "models", "aliases", "teams", "users", "projects"]
SECTIONS: tuple[SectionName, ...] = ("providers", "models", "aliases", "teams", "users", "projects")
SECTION_TYPES: dict[str, type[_Frozen]] = {
    "providers": Provider,
    "models": Model,
    "aliases": Alias,
    "teams": Team,
    "users": User,
    "projects": Project,
}


def record_key(section: str, item: BaseModel) -> str:
    """The identity of an item within its section (name or id)."""
    return str(getattr(item, "name" if section in {"providers", "models", "aliases"} else "id"))
