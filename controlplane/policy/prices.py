"""Model prices: the shipped catalog applied to policy, compiled to the snapshot's Price, and aged.

`resolve_prices` returns the document with every catalog price written out as figures, so budgets,
the compiler and `models list` all see the same exact decimals. A model whose price is omitted gets
the catalog's figures when the catalog knows its (provider kind, upstream name); a model marked
free, or one the catalog does not know, keeps its own (possibly empty: unpriced) price.
"""

from __future__ import annotations

import hashlib
from datetime import date

from controlplane.price_catalog import PRICE_FIELDS, Catalog, CatalogEntry, CatalogError, CatalogStore
from interlock_contracts.v1 import policy_pb2

from .model import Model, PolicyDocument, Price, PriceTier, Provider

POLICY_SOURCE = "policy"


def _serving(m: Model, providers: dict[str, Provider]) -> tuple[str, str]:
    """(provider kind, upstream name) of the model's first deployment: the name the catalog is keyed by."""
    if m.provider is not None:
        p, upstream = providers.get(m.provider), m.upstream or m.name
    else:
        d = m.deployments[0] if m.deployments else None
        p = providers.get(d.provider) if d else None
        upstream = (d.upstream if d and d.upstream else None) or m.upstream or m.name
    return (p.kind if p else ""), upstream


def _given(price: Price) -> set[str]:
    """The figures policy sets itself: those unlike the defaults (a stored document carries every field, so
    `model_fields_set` cannot tell; a figure of "0" beside `catalog` is therefore not an override: use `free`)."""
    return {f for f in (*PRICE_FIELDS, "above") if getattr(price, f) != _DEFAULT.get(f)}


_DEFAULT = {"input": "0", "output": "0"}


def _from_catalog(price: Price, entry: CatalogEntry, catalog: Catalog) -> Price:
    given = _given(price)
    figures = {f: v for f, v in entry.figures.items() if f in PRICE_FIELDS}
    tier = entry.figures.get("above")
    merged = {**figures, **({"above": PriceTier(**tier)} if tier else {}),
              **{f: getattr(price, f) for f in given}}  # any figure in policy overrides the catalog's
    return Price(**merged, catalog=price.catalog, catalog_model=price.catalog_model,
                 source=f"catalog:{catalog.version}" + ("+policy" if given else ""), source_url=entry.source,
                 source_date=entry.read_on.isoformat())


def _resolve(m: Model, providers: dict[str, Provider], store: CatalogStore) -> Model:
    price = m.price
    omitted = not m.free and price.catalog is None and not _given(price)
    if price.catalog is None and not omitted:
        return m.model_copy(update={"price": price.model_copy(
            update={"source": POLICY_SOURCE, "source_url": None, "source_date": None})})
    kind, upstream = _serving(m, providers)
    catalog = store.get(price.catalog or "latest")
    entry = catalog.lookup(kind, price.catalog_model or upstream)
    if entry is None:
        if omitted:
            return m  # not in the catalog: unpriced, as before (budgets charge the conservative default)
        raise CatalogError(f"model {m.name!r}: price catalog {catalog.version} has no entry for "
                           f"{price.catalog_model or upstream!r} on a {kind or 'unknown'} provider; give the price "
                           "figures in policy, or name the catalog's model with price.catalog_model")
    return m.model_copy(update={"price": _from_catalog(price, entry, catalog)})


def price_errors(doc: PolicyDocument, store: CatalogStore | None = None) -> list[str]:
    try:
        resolve_prices(doc, store)
    except CatalogError as exc:
        return [str(exc)]
    return []


def resolve_prices(doc: PolicyDocument, store: CatalogStore | None = None) -> PolicyDocument:
    """The document with catalog prices written out as figures (raises CatalogError)."""
    store = store or CatalogStore()
    providers = {p.name: p for p in doc.providers}
    return doc.model_copy(update={"models": [_resolve(m, providers, store) for m in doc.models]})


def compile_price(pr: Price) -> policy_pb2.Price:
    """policy Price -> snapshot Price. `version` names where the figures came from plus a hash of them,
    so a changed figure is visible in every event's price_version."""
    cached = pr.cached_input if pr.cached_input is not None else pr.input
    figures = "|".join(str(getattr(pr, f) or "") for f in PRICE_FIELDS) + f"|{pr.above.model_dump_json() if pr.above else ''}"
    digest = hashlib.sha256(figures.encode()).hexdigest()[:8]
    source = pr.source or POLICY_SOURCE
    out = policy_pb2.Price(
        input_per_mtok=pr.input, output_per_mtok=pr.output, cached_input_per_mtok=cached,
        version=f"{source}@{digest}", cache_write_per_mtok=pr.cache_write or "",
        cache_write_1h_per_mtok=pr.cache_write_1h or "", audio_input_per_mtok=pr.audio_input or "",
        audio_output_per_mtok=pr.audio_output or "", source=source, source_url=pr.source_url or "",
        source_date=pr.source_date or "",
    )
    if pr.above is not None:
        t = pr.above
        out.above_input_tokens = t.input_tokens
        out.above.CopyFrom(policy_pb2.Price(
            input_per_mtok=t.input, output_per_mtok=t.output,
            cached_input_per_mtok=t.cached_input if t.cached_input is not None else t.input,
            cache_write_per_mtok=t.cache_write or "", cache_write_1h_per_mtok=t.cache_write_1h or "",
            version=out.version))
    return out


def stale_prices(doc: PolicyDocument, today: date, max_age_days: int) -> list[str]:
    """Warnings for catalog prices read more than `max_age_days` ago (on a resolved document)."""
    out = []
    for m in doc.models:
        if m.price.source_date and (age := (today - date.fromisoformat(m.price.source_date)).days) > max_age_days:
            out.append(f"model {m.name!r}: its catalog price was read {age} days ago ({m.price.source_date}, "
                       f"{m.price.source_url}); check it, pin a newer catalog, or set the figures in policy")
    return out
