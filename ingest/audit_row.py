"""The request trail's row: one type for the query service, the admin API and the CLI, built from the usage
schema (interlock_contracts/usage_schema.py).

Python field names are the select list's (`time_us`, `team_id`, `cost_usd` as an exact Decimal), what the
query service and the web console read. In JSON (the admin API, `interlock audit -o json|csv`) a field
takes its API name (`time`, `team`, ...), times are ISO-8601 and costs exact decimal strings; the same
type reads that JSON back (the CLI), accepting either name.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, create_model

from interlock_contracts.usage_schema import UsageColumn, UsageSchema, usage_schema

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso_time(us: int) -> str:
    """Unix microseconds -> '2026-01-02T03:04:05.123456Z'."""
    return datetime.fromtimestamp(us / 1e6, UTC).isoformat().replace("+00:00", "Z")


def money_text(d: Decimal) -> str:
    """The exact cost as a plain decimal string (never an exponent: '0E-12' is '0.000000000000')."""
    return format(d, "f")


def _from_iso(value: Any) -> Any:
    if isinstance(value, str):
        return (datetime.fromisoformat(value.replace("Z", "+00:00")) - _EPOCH) // timedelta(microseconds=1)
    return value


_US = Annotated[int, BeforeValidator(_from_iso), PlainSerializer(iso_time, return_type=str, when_used="json")]
_USD = Annotated[Decimal, PlainSerializer(money_text, return_type=str, when_used="json")]


def python_type(column: UsageColumn) -> type:
    """The row field's type: the audit's `kind`, else read off the ClickHouse type."""
    if column.audit is not None and column.audit.kind is not None:
        return column.audit.kind
    t = column.ch_type
    if t == "Bool":
        return bool
    if t.startswith(("UInt", "Int")):
        return int
    if t.startswith("Decimal("):
        return Decimal
    if t in ("String", "LowCardinality(String)"):
        return str
    raise ValueError(f"audit column {column.name}: no Python type for {t}; give its Audit a kind")


class AuditRowBase(BaseModel):
    # Every field has its zero default, so a CLI reads an older server's rows (without a newer column);
    # the response schema still marks them all required: the server always sends them.
    model_config = ConfigDict(frozen=True, json_schema_serialization_defaults_required=True)

    if TYPE_CHECKING:  # the fields come from the schema: attribute access is not checked statically
        def __getattr__(self, name: str) -> Any: ...


@functools.cache  # one class per schema: the query service's rows are the admin API's
def audit_row_model(schema: UsageSchema, name: str = "AuditRow") -> type[AuditRowBase]:
    fields: dict[str, Any] = {}
    for c in schema.audited:
        assert c.audit is not None  # audited
        field, api = c.audit.name or c.name, c.audit.api or c.audit.name or c.name
        t = python_type(c)
        ann: Any = _US if c.unit == "us" else _USD if t is Decimal else t
        aliases: dict[str, Any] = {} if api == field else {
            "validation_alias": AliasChoices(field, api), "serialization_alias": api}
        fields[field] = (ann, Field(t(), description=c.doc or None, **aliases))
    model: type[AuditRowBase] = create_model(name, __base__=AuditRowBase, **fields)
    return model


if TYPE_CHECKING:
    AuditRow = AuditRowBase
else:
    AuditRow = audit_row_model(usage_schema())


def api_names(row: type[BaseModel]) -> list[str]:
    """The row's field names as JSON and CSV carry them."""
    return [f.serialization_alias or n for n, f in row.model_fields.items()]
