"""The shipped price catalog (validated here in CI) and how policy uses it: `price: catalog`, an omitted
price, a pinned version, overrides, misses; price_version; `models list` and the `apply` age warning."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane.errors import PolicyInvalid
from controlplane.policy.compiler import compile_snapshot
from controlplane.policy.model import PolicyDocument
from controlplane.policy.prices import resolve_prices, stale_prices
from controlplane.price_catalog import PRICE_FIELDS, CatalogError, CatalogStore, parse_catalog
from dataplane.dialects.base import Usage
from dataplane.pricing import price_from_proto
from interlock.cli.policy_cmds import catalog_warnings
from tests.fixtures.admin import cli_ok
from tests.shell.test_cli_policy import Admin, admin  # noqa: F401  (the admin fixture)

DATA = resources.files("controlplane.price_catalog").joinpath("data")


def _files() -> list[Any]:
    return sorted((f for f in DATA.iterdir() if f.name.endswith(".json")), key=lambda f: f.name)


def test_every_shipped_catalog_entry_has_a_source_a_date_and_exact_prices() -> None:
    files = _files()
    assert files, "no catalog shipped"
    vendors_seen: set[str] = set()
    for f in files:
        raw = json.loads(f.read_text())
        version = f.name.removeprefix("catalog-").removesuffix(".json")
        cat = parse_catalog(raw, version)  # raises on a missing source/date or an inexact price
        assert len(cat.entries) == sum(len(m) for m in raw["vendors"].values())
        for (vendor, model), e in cat.entries.items():
            vendors_seen.add(vendor)
            assert e.source.startswith("https://") and e.read_on <= date.fromisoformat(version), (vendor, model)
            figures = [e.figures[k] for k in PRICE_FIELDS if k in e.figures]
            figures += [v for k, v in e.figures.get("above", {}).items() if k != "input_tokens"]
            for v in figures:
                assert isinstance(v, str)
                pico = Decimal(v) * 10**6  # pico-USD per token: every list price is exact, no rounding
                assert pico == pico.to_integral_value() and pico >= 0, (vendor, model, v)
    assert vendors_seen == {"openai", "anthropic", "google", "mistral", "bedrock", "azure_openai"}


@pytest.mark.parametrize("bad,problem", [
    ({"input": "1", "output": "2", "read_on": "2026-01-01"}, "source"),
    ({"input": "1", "output": "2", "source": "http://x", "read_on": "2026-01-01"}, "source"),
    ({"input": "1", "output": "2", "source": "https://x", "read_on": "yesterday"}, "read_on"),
    ({"input": "1", "output": "2", "source": "https://x", "read_on": "2027-01-01"}, "after"),
    ({"input": 1.5, "output": "2", "source": "https://x", "read_on": "2026-01-01"}, "decimal string"),
    ({"input": "-1", "output": "2", "source": "https://x", "read_on": "2026-01-01"}, "non-negative"),
    ({"input": "NaN", "output": "2", "source": "https://x", "read_on": "2026-01-01"}, "finite"),
    ({"output": "2", "source": "https://x", "read_on": "2026-01-01"}, "needs input"),
    ({"input": "1", "output": "2", "source": "https://x", "read_on": "2026-01-01", "above": {"input": "2"}},
     "input_tokens"),
])
def test_malformed_catalog_entries_are_rejected(bad: dict[str, Any], problem: str) -> None:
    with pytest.raises(CatalogError, match=problem):
        parse_catalog({"version": "2026-06-01", "vendors": {"openai": {"m": bad}}}, "2026-06-01")


def _doc(models: list[dict[str, Any]], kind: str = "anthropic") -> PolicyDocument:
    return PolicyDocument.model_validate({
        "providers": [{"name": "p", "kind": kind, "base_url": "https://api.example.com", "credential": "env:K"}],
        "models": [{"provider": "p", **m} for m in models]})


def _snapshot_price(doc: PolicyDocument, name: str) -> Any:
    snap = compile_snapshot(doc, [], version=1, now_ms=0)
    return next(m.price for m in snap.models if m.name == name)


def test_price_catalog_shorthand_omitted_and_pinned_prices_come_from_the_catalog() -> None:
    latest = CatalogStore().versions()[-1]
    doc = _doc([{"name": "sonnet", "upstream": "claude-sonnet-4-5-20250929", "price": "catalog"},
                {"name": "haiku", "upstream": "claude-haiku-4-5"},  # price omitted, the catalog knows it
                {"name": "pinned", "upstream": "claude-opus-4-5", "price": {"catalog": latest}},
                {"name": "mine", "upstream": "claude-haiku-4-5", "price": {"input": "7", "output": "9"}}])
    sonnet = _snapshot_price(doc, "sonnet")
    assert (sonnet.input_per_mtok, sonnet.output_per_mtok, sonnet.cached_input_per_mtok, sonnet.cache_write_per_mtok,
            sonnet.cache_write_1h_per_mtok) == ("3", "15", "0.3", "3.75", "6")
    assert sonnet.above_input_tokens == 200_000 and sonnet.above.input_per_mtok == "6"
    assert sonnet.source == f"catalog:{latest}" and sonnet.source_url.startswith("https://www.anthropic.com/")
    assert sonnet.version.startswith(f"catalog:{latest}@")  # what every event's price_version says
    assert _snapshot_price(doc, "haiku").input_per_mtok == "1"
    assert _snapshot_price(doc, "pinned").output_per_mtok == "25"
    mine = _snapshot_price(doc, "mine")
    assert (mine.input_per_mtok, mine.source) == ("7", "policy") and mine.version.startswith("policy@")
    # the data plane bills a 1-hour cache write on the catalog-priced model at 2x input, exactly
    assert price_from_proto(sonnet).cost_pico(Usage(input_tokens=1000, cache_write_1h_tokens=1000)) == 1000 * 6_000_000


def test_policy_figures_override_the_catalog() -> None:
    doc = _doc([{"name": "s", "upstream": "claude-sonnet-4-5", "price": {"catalog": "latest", "output": "14"}}])
    p = _snapshot_price(doc, "s")
    assert (p.input_per_mtok, p.output_per_mtok) == ("3", "14") and p.source.endswith("+policy")


def test_catalog_misses_and_unknown_versions_are_policy_errors_that_say_what_to_do() -> None:
    with pytest.raises(PolicyInvalid, match=r"has no entry for 'my-finetune'.*catalog_model"):
        compile_snapshot(_doc([{"name": "x", "upstream": "my-finetune", "price": "catalog"}]), [], version=1, now_ms=0)
    with pytest.raises(PolicyInvalid, match=r"not shipped.*available"):
        compile_snapshot(_doc([{"name": "x", "upstream": "claude-haiku-4-5", "price": {"catalog": "1999-01-01"}}]),
                         [], version=1, now_ms=0)
    # an Azure deployment name maps to the catalog's model with catalog_model
    doc = _doc([{"name": "az", "upstream": "prod-4o", "price": {"catalog": "latest", "catalog_model": "gpt-4o"}}],
               kind="openai_compatible")
    with pytest.raises(PolicyInvalid, match="openai_compatible"):
        compile_snapshot(doc, [], version=1, now_ms=0)  # no list price for a self-hosted server


def test_omitted_price_outside_the_catalog_stays_unpriced() -> None:
    doc = _doc([{"name": "local", "upstream": "qwen-coder"}], kind="openai_compatible")
    snap = compile_snapshot(doc, [], version=1, now_ms=0)
    assert "local" in snap.budget_policy.unpriced_models


def test_stale_catalog_prices_are_reported() -> None:
    doc = _doc([{"name": "s", "upstream": "claude-sonnet-4-5", "price": "catalog"},
                {"name": "m", "upstream": "claude-haiku-4-5", "price": {"input": "1", "output": "5"}}])
    read_on = date.fromisoformat(resolve_prices(doc).models[0].price.source_date or "")
    assert stale_prices(resolve_prices(doc), read_on, 90) == []
    later = date.fromordinal(read_on.toordinal() + 91)
    (warning,) = stale_prices(resolve_prices(doc), later, 90)
    assert "model 's'" in warning and "91 days" in warning
    assert catalog_warnings(doc, later, 200) == []


def test_models_list_shows_where_prices_come_from_and_apply_warns_on_age(
        admin: Admin, tmp_path: Path) -> None:  # noqa: F811
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump({
        "providers": [{"name": "anthropic", "kind": "anthropic", "base_url": "https://api.anthropic.com",
                       "credential": "env:ANTHROPIC_API_KEY"}],
        "models": [{"name": "sonnet", "provider": "anthropic", "upstream": "claude-sonnet-4-5", "price": "catalog"},
                   {"name": "own", "provider": "anthropic", "upstream": "claude-haiku-4-5",
                    "price": {"input": "1", "output": "5"}}]}))
    applied = cli_ok(admin.run("apply", "-f", str(policy), "--max-price-age", "1"))
    if date.today() > date.fromisoformat(CatalogStore().versions()[-1]):
        assert "warning: model 'sonnet': its catalog price was read" in applied.stderr
    latest = CatalogStore().versions()[-1]
    table = cli_ok(admin.run("models", "list")).stdout
    assert f"price: catalog:{latest}" in table and "price: policy" in table
    assert all(len(line) <= 80 for line in table.splitlines())
    rows = {m["name"]: m for m in json.loads(cli_ok(admin.run("models", "list", "-o", "json")).stdout)}
    assert rows["sonnet"]["price_source"] == f"catalog:{latest}" and rows["sonnet"]["cache_write_per_mtok"] == "3.75"
    assert rows["own"]["price_source"] == "policy"
