"""`models list`: every routable model and alias with its prices and where they come from. Pure."""

from __future__ import annotations

from .policy.compiler import resolve_aliases
from .policy.model import PolicyDocument
from .policy.prices import resolve_prices
from .price_catalog import CatalogError
from .service_types import ModelInfo


def model_infos(doc: PolicyDocument) -> list[ModelInfo]:
    try:
        doc = resolve_prices(doc)  # catalog prices as figures, with where they came from
    except CatalogError:
        pass  # a store written around the API: show the figures as stored
    models = {m.name: m for m in doc.models}
    flat, _ = resolve_aliases(doc)  # dangling aliases (only in a broken store) are left out
    out = []
    for name, target in [(m, m) for m in models] + list(flat.items()):
        m = models[target]
        price = m.price
        out.append(ModelInfo(
            name=name, kind="model" if name == target else "alias",
            provider=m.provider or ",".join(d.provider for d in m.deployments), upstream=m.upstream or m.name,
            target=target, input_per_mtok=price.input, output_per_mtok=price.output,
            cached_input_per_mtok=price.cached_input if price.cached_input is not None else price.input,
            cache_write_per_mtok=price.cache_write or "", price_source=price.source or "policy",
            price_source_url=price.source_url or "", price_read_on=price.source_date or "",
        ))
    return sorted(out, key=lambda i: i.name)
