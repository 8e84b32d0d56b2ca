"""The shipped price catalog: dated, versioned list prices of well-known models, one JSON file per version
(data/catalog-YYYY-MM-DD.json), each entry with its provider's price page and the date it was read.

Policy uses it with `price: catalog`, by omitting the price of a model the catalog knows, or by
pinning `price: {catalog: "2026-12-06"}`; figures given next to `catalog` override the catalog's.
Resolution happens once, when policy is validated and compiled (controlplane/policy/prices.py):
the data plane only ever sees exact decimal figures in the snapshot.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from importlib import resources
from typing import Any

# provider kind -> catalog vendor section (openai_compatible servers have no list price)
VENDOR_OF_KIND = {
    "openai": "openai", "azure_openai": "azure_openai", "anthropic": "anthropic", "vertex_anthropic": "anthropic",
    "gemini": "google", "vertex_gemini": "google", "mistral": "mistral", "bedrock": "bedrock",
    "bedrock_anthropic": "bedrock",
}
PRICE_FIELDS = ("input", "output", "cached_input", "cache_write", "cache_write_1h", "audio_input", "audio_output")
TIER_FIELDS = ("input", "output", "cached_input", "cache_write", "cache_write_1h")
_VERSION_FILE = re.compile(r"^catalog-(\d{4}-\d{2}-\d{2})\.json$")
_DATED_SUFFIX = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2})$")  # claude-sonnet-4-5-20250929, gpt-4.1-2025-04-14


class CatalogError(ValueError):
    """The catalog data is malformed (a packaging bug) or a lookup cannot be satisfied."""


@dataclass(frozen=True)
class CatalogEntry:
    vendor: str
    model: str
    figures: dict[str, Any]  # PRICE_FIELDS present + optional "above" tier (exact decimal strings)
    source: str
    read_on: date


@dataclass(frozen=True)
class Catalog:
    version: str
    entries: dict[tuple[str, str], CatalogEntry]

    def lookup(self, kind: str, model: str) -> CatalogEntry | None:
        vendor = VENDOR_OF_KIND.get(kind)
        if vendor is None:
            return None
        found = self.entries.get((vendor, model))
        if found is None and (undated := _DATED_SUFFIX.sub("", model)) != model:
            found = self.entries.get((vendor, undated))
        return found


def _exact(v: Any, where: str) -> str:
    if not isinstance(v, str):
        raise CatalogError(f"{where}: a price must be a decimal string, got {v!r}")
    try:
        d = Decimal(v)
    except InvalidOperation as exc:
        raise CatalogError(f"{where}: {v!r} is not a decimal") from exc
    if not d.is_finite() or d < 0:
        raise CatalogError(f"{where}: {v!r} is not a finite non-negative price")
    return v


def parse_catalog(data: Any, version: str) -> Catalog:
    """Validate one catalog file: every entry has a source URL, a read date and exact prices."""
    if not isinstance(data, dict) or data.get("version") != version:
        raise CatalogError(f"catalog {version}: 'version' must equal the file's date")
    entries: dict[tuple[str, str], CatalogEntry] = {}
    for vendor, models in (data.get("vendors") or {}).items():
        if vendor not in VENDOR_OF_KIND.values():
            raise CatalogError(f"catalog {version}: unknown vendor {vendor!r}")
        for model, e in models.items():
            where = f"catalog {version} {vendor}/{model}"
            src, read = e.get("source"), e.get("read_on")
            if not isinstance(src, str) or not src.startswith("https://"):
                raise CatalogError(f"{where}: needs 'source', the https URL of the provider's price page")
            try:
                read_on = date.fromisoformat(read)
            except (TypeError, ValueError) as exc:
                raise CatalogError(f"{where}: needs 'read_on', the date the page was read (YYYY-MM-DD)") from exc
            if read_on > date.fromisoformat(version):
                raise CatalogError(f"{where}: read_on {read} is after the catalog's own date")
            unknown = set(e) - {*PRICE_FIELDS, "above", "source", "read_on"}
            if unknown or "input" not in e or "output" not in e:
                raise CatalogError(f"{where}: needs input and output; unknown fields {sorted(unknown)}")
            figures: dict[str, Any] = {f: _exact(e[f], f"{where}.{f}") for f in PRICE_FIELDS if f in e}
            if (tier := e.get("above")) is not None:
                if not isinstance(tier.get("input_tokens"), int) or tier["input_tokens"] <= 0:
                    raise CatalogError(f"{where}.above: input_tokens must be a positive integer")
                figures["above"] = {"input_tokens": tier["input_tokens"],
                                    **{f: _exact(tier[f], f"{where}.above.{f}") for f in TIER_FIELDS if f in tier}}
            entries[(vendor, model)] = CatalogEntry(vendor, model, figures, src, read_on)
    return Catalog(version, entries)


class CatalogStore:
    """Every catalog version shipped with the package, loaded on first use and kept (immutable data)."""

    def __init__(self, package: str = "controlplane.price_catalog") -> None:
        self._package = package
        self._catalogs: dict[str, Catalog] | None = None

    def _load(self) -> dict[str, Catalog]:
        if self._catalogs is None:
            found: dict[str, Catalog] = {}
            for f in resources.files(self._package).joinpath("data").iterdir():
                if m := _VERSION_FILE.match(f.name):
                    found[m.group(1)] = parse_catalog(json.loads(f.read_text(encoding="utf-8")), m.group(1))
            if not found:
                raise CatalogError(f"no price catalog shipped in {self._package}/data")
            self._catalogs = found
        return self._catalogs

    def versions(self) -> list[str]:
        return sorted(self._load())

    def get(self, version: str = "latest") -> Catalog:
        catalogs = self._load()
        if version == "latest":
            return catalogs[max(catalogs)]
        if version not in catalogs:
            raise CatalogError(f"price catalog {version!r} is not shipped with this version of interlock "
                               f"(available: {', '.join(sorted(catalogs))}, or 'latest')")
        return catalogs[version]
