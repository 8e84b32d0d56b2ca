"""Rich rendering for the policy CLI: policy diffs and the keys/models/nodes tables.

Pure functions from API shapes to renderables, so they are easy to test and
reuse. Tables are laid out to stay readable at 100 columns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ValidationError
from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from controlplane.admin_schemas import ChangeOut, KeyOut, ModelOut, NodeOut
from controlplane.policy.model import SECTION_TYPES, PolicyDocument
from interlock_contracts.keys import KEY_PREFIX

_SENSITIVE = re.compile(r"auth|key|token|secret|password|cookie|signature", re.IGNORECASE)
_HIDDEN_FIELDS = frozenset({"key_hash", "secret"})
_MASK = "•••"
_STYLE = {"create": ("+", "green"), "update": ("~", "yellow"), "delete": ("-", "red")}


# -- small formatters -------------------------------------------------------------


def ago(ms: int, now_ms: int) -> str:
    """'3s ago', '5m ago', '2h ago', '4d ago'; 'never' for 0."""
    if ms <= 0:
        return "never"
    return f"{_span(max(0, now_ms - ms))} ago"


def until(ms: int, now_ms: int) -> str:
    """Expiry: 'never', 'in 29d', or 'expired 2h ago'."""
    if ms <= 0:
        return "never"
    return f"in {_span(ms - now_ms)}" if ms > now_ms else f"expired {_span(now_ms - ms)} ago"


def _span(ms: int) -> str:
    """'45s', '5m', '1h30m', '2h', '29d4h': rounded to the nearest minute / hour, so a key minted with
    --ttl 2h a moment ago shows '2h', not '1h' (truncation did)."""
    s = (ms + 500) // 1000
    if s >= 86400:
        d, h = divmod((s + 1800) // 3600, 24)
        return f"{d}d{h}h" if h else f"{d}d"
    if s >= 3600:
        h, m = divmod((s + 30) // 60, 60)
        return f"{h}h{m}m" if m else f"{h}h"
    if s >= 60:
        return f"{(s + 30) // 60}m"
    return f"{s}s"


def plural(n: int, word: str) -> str:
    """plural(1, 'model') -> '1 model'; plural(2, 'alias') -> '2 aliases'."""
    return f"{n} {word}" if n == 1 else f"{n} {word}{'es' if word.endswith('s') else 's'}"


def price(value: str) -> str:
    """'2.5' -> '$2.50'; more digits kept when they matter ('0.075' -> '$0.075')."""
    if value == "":
        return "—"
    try:
        d = Decimal(value)
    except InvalidOperation:
        return value
    return f"${d:.2f}" if d == d.quantize(Decimal("0.01")) else f"${d.normalize():f}"


def _fmt(v: Any) -> str:
    if v is None:
        return "(unset)"
    if isinstance(v, str):
        return safe(v) if v else '""'
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


# -- policy diff ------------------------------------------------------------------


def _flatten(d: dict[str, Any] | None, prefix: str = "") -> dict[str, Any]:
    """Nested dicts become dotted paths ('price.input'); secret fields are dropped."""
    out: dict[str, Any] = {}
    for k, v in (d or {}).items():
        if k in _HIDDEN_FIELDS:
            continue
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def shown(path: str, value: Any) -> str:
    """A value for display; secret-looking headers are masked (they may carry static upstream auth)."""
    if path.startswith("headers.") and _SENSITIVE.search(path) and value is not None:
        return _MASK
    return _fmt(value)


def field_changes(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[tuple[str, Any, Any]]:
    """(path, old, new) for every field that differs; paths in a stable order."""
    b, a = _flatten(before), _flatten(after)
    paths = list(dict.fromkeys([*b, *a]))
    return [(p, b.get(p), a.get(p)) for p in paths if b.get(p) != a.get(p)]


def _summary_fields(d: dict[str, Any] | None) -> str:
    """A one-line 'field=value' summary of a created item, skipping its identity and empty values."""
    flat = _flatten(d)
    return "  ".join(f"{k}={shown(k, v)}" for k, v in flat.items() if k not in {"name", "id"} and v not in ("", None, [], {}))


def change_summary(changes: Iterable[ChangeOut]) -> str:
    counts = {"create": 0, "update": 0, "delete": 0}
    for c in changes:
        counts[c.action] += 1
    return f"{counts['create']} to create, {counts['update']} to update, {counts['delete']} to delete"


def diff(changes: list[ChangeOut]) -> RenderableType:
    """Changes grouped by section: + created (green), ~ updated (yellow) with old → new, - deleted (red)."""
    lines: list[RenderableType] = []
    sections = list(dict.fromkeys(c.section for c in changes))
    for section in sections:
        lines.append(Text(section, style="bold"))
        for c in (c for c in changes if c.section == section):
            mark, style = _STYLE[c.action]
            line = Text(f"  {mark} ", style=style)
            line.append(c.name, style=f"bold {style}")
            if c.action == "create" and (summary := _summary_fields(c.after)):
                line.append(f"  {summary}", style="dim")
            line.no_wrap, line.overflow = True, "ellipsis"
            lines.append(line)
            if c.action == "update":
                for path, old, new in field_changes(c.before, c.after):
                    row = Text(f"      {path}: ")
                    row.append(shown(path, old), style="red")
                    row.append(" → ")
                    row.append(shown(path, new), style="green")
                    lines.append(row)
    return Group(*lines)


# -- policy file errors ------------------------------------------------------------


def _where(data: Any, loc: tuple[int | str, ...]) -> str:
    """A readable field path: ('models', 2, 'price') -> 'models[2] (gpt-4o).price'."""
    out, node = "", data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            ident = node.get("name") or node.get("id") if isinstance(node, dict) else None
            out += f" ({ident})" if ident else ""
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out or "(top level)"


def _problem(err: Any) -> str:
    loc, msg = tuple(err["loc"]), str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        parent: type[BaseModel] | None = PolicyDocument if len(loc) == 1 else SECTION_TYPES.get(str(loc[0]))
        if parent is not None and len(loc) <= 3:
            return f"unknown field (allowed: {', '.join(parent.model_fields)})"
    return msg


def validation_problems(data: Any, exc: ValidationError) -> list[str]:
    """One line per pydantic error of a policy document, each naming the field to fix."""
    return [f"{_where(data, tuple(e['loc']))}: {_problem(e)}" for e in exc.errors()]


# -- tables -----------------------------------------------------------------------


# SIMPLE_HEAD with a gap in the rule under the header, so every column's width shows (and tests can read it).
_BOX = box.Box("    \n    \n ─  \n    \n    \n    \n    \n    \n")
_SPEC = re.compile(r"^(?P<name>.*?)(?P<flag>[!>]?)(?:~(?P<rank>\d))?$")
MIN_COLUMN = 4  # narrower than this a column is fragments, not text: drop a column instead
_WRAP_WORD_CAP = 12  # a wrapping column needs about its longest word, up to this


class FitTable(Table):
    """A Table that fits the console: when the columns cannot all get a readable width, it drops the
    droppable ones (declared `NAME~1`, `NAME~2`, ...: lowest rank first) and says so in the caption."""

    drop_ranks: dict[int, int]  # column index -> rank

    def add_row(self, *renderables: Any, **kw: Any) -> None:
        # Every row, however it is built: client-supplied text (tags, model names) never reaches the terminal raw.
        super().add_row(*(cell(r) if isinstance(r, str | Text) else r for r in renderables), **kw)

    def __rich_console__(self, console: Any, options: Any) -> Any:
        self.fit(options.max_width)
        return super().__rich_console__(console, options)

    def _need(self, i: int) -> int:
        col = self.columns[i]
        cells = [c.plain if isinstance(c, Text) else str(c) for c in col._cells]
        header = str(col.header)
        if col.no_wrap:
            width = max([len(header), *(len(c) for c in cells)])
        else:
            words = [len(w) for text in [header, *cells] for w in text.split()] or [0]
            width = min(max(words), _WRAP_WORD_CAP)
        return max(width, MIN_COLUMN) + 2  # right padding + the gap

    def fit(self, width: int) -> None:
        dropped: list[str] = []
        order = sorted(self.drop_ranks, key=lambda i: (self.drop_ranks[i], -i))
        keep = list(range(len(self.columns)))
        while sum(self._need(i) for i in keep) > width + 1 and order:
            victim = order.pop(0)
            keep.remove(victim)
            dropped.append(str(self.columns[victim].header))
        if dropped:
            self.columns = [self.columns[i] for i in keep]
            self.drop_ranks = {}
            note = f"hidden at {width} columns: {', '.join(dropped)} (wider terminal or -o json shows all)"
            self.caption = f"{self.caption}\n{note}" if self.caption else note
        for c in self.columns:
            c.min_width = MIN_COLUMN


def table(*columns: str, caption: str | None = None, title: str | None = None) -> FitTable:
    """The CLI's table style. Columns named with a trailing '!' never wrap (ids, times, statuses), with '>'
    are right-aligned figures kept on one line; the rest share what is left. A trailing '~N' (after the
    flag) marks a column that may be dropped when the terminal is too narrow, rank 1 first."""
    # Edges off and one space of padding: with the separator column that leaves a 2-space gap.
    t = FitTable(box=_BOX, show_edge=False, padding=(0, 1, 0, 0), header_style="bold", caption=caption,
                 caption_justify="left", title=title, title_justify="left")
    t.drop_ranks = {}
    for i, spec in enumerate(columns):
        m = _SPEC.match(spec)
        assert m is not None
        flag = m["flag"]
        t.add_column(m["name"], justify="right" if flag == ">" else "left", no_wrap=bool(flag),
                     overflow="ellipsis" if flag == "!" else "fold")
        if m["rank"]:
            t.drop_ranks[i] = int(m["rank"])
    return t


# C0/C1 controls and DEL: an ESC in a tag or model name would otherwise drive the terminal (clear the screen,
# OSC 52 writes to the clipboard). Shown escaped, like Python's repr does.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def safe(s: str) -> str:
    """`s` with control characters shown as \\xNN, so client-supplied text prints literally and harmlessly."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", s) if _CONTROL.search(s) else s


def safe_tree(v: Any) -> Any:
    """An API answer (dicts, lists, strings) with every string made `safe`, for printing outside a table."""
    if isinstance(v, str):
        return safe(v)
    if isinstance(v, dict):
        return {k: safe_tree(x) for k, x in v.items()}
    if isinstance(v, list):
        return [safe_tree(x) for x in v]
    return v


def cell(c: str | Text) -> Text:
    """A table cell: plain Text, never markup, with control characters escaped."""
    if isinstance(c, str):
        return Text(safe(c))
    return Text(safe(c.plain), style=c.style) if _CONTROL.search(c.plain) else c


def add_row(t: Table, *cells: str | Text) -> None:
    # Plain Text, never markup: names and reasons come from users and must print literally.
    t.add_row(*(cell(c) for c in cells))


def _owner(k: KeyOut) -> str:
    parts = [p for p in (k.team, k.user, k.project) if p]
    return "/".join(parts) if parts else "—"


def key_status(k: KeyOut, now_ms: int) -> Text:
    """'active', '9d left' (active, expiring), 'expired' or 'revoked'; short so the table fits 100 columns."""
    if k.revoked:
        return Text("revoked", style="red")
    if 0 < k.expires_at_unix_ms <= now_ms:
        return Text("expired", style="yellow")
    if k.paused:
        return Text("paused", style="red")  # by the loop breaker: interlock keys resume
    if k.expires_at_unix_ms:
        return Text(f"{_span(k.expires_at_unix_ms - now_ms)} left", style="green")
    return Text("active", style="green")


def keys_table(keys: list[KeyOut], now_ms: int) -> Table:
    """OWNER is team/user/project, whichever are set; MODELS empty means the team's allowlist."""
    t = table("ID!", "NAME", "HINT!~2", "OWNER", "MODELS~3", "STATUS!", "CREATED!~1")
    for k in sorted(keys, key=lambda k: (k.revoked, -k.created_at_unix_ms)):
        add_row(
            t, k.id, k.name or "—", k.hint.removeprefix(KEY_PREFIX), _owner(k),
            ", ".join(k.allowed_models) or ("team's" if k.team else "any"),
            key_status(k, now_ms), ago(k.created_at_unix_ms, now_ms),
        )
    return t


def route_cell(route: str, m: ModelOut) -> Text:
    """Where the model routes, and where its price comes from (a dim second line)."""
    cell = Text(route)
    # the page's read date, when it differs from the catalog version's own date
    read = f" read {m.price_read_on}" if m.price_read_on and not m.price_source.endswith(m.price_read_on) else ""
    cell.append(f"\nprice: {m.price_source}{read}", style="dim")
    return cell


def models_table(models: list[ModelOut]) -> Table:
    t = table("NAME", "KIND!~2", "ROUTES TO", "INPUT!", "OUTPUT!", "CACHED!~1",
              caption="prices: USD per 1M tokens; all token classes: -o json")
    for col in t.columns[3:]:
        col.justify = "right"
    for m in sorted(models, key=lambda m: (m.kind != "model", m.name)):
        route = f"{m.provider}/{m.upstream}" if m.kind == "model" else f"→ {m.target} ({m.provider})"
        add_row(
            t, Text(m.name, style="bold"), m.kind, route_cell(route, m),
            price(m.input_per_mtok), price(m.output_per_mtok), price(m.cached_input_per_mtok),
        )
    return t


def sync_cell(n: NodeOut, version: int) -> Text:
    if n.in_sync:
        return Text("✓", style="green")
    if n.rejected_version and n.rejected_version >= version:
        return Text("rejected", style="red")
    return Text("behind", style="yellow")


def nodes_table(nodes: list[NodeOut], version: int, now_ms: int) -> Table:
    t = table("NODE!", "ADDRESS!~2", "APPLIED!", "SYNC!", "CONNECTED!~3", "LAST SEEN!~1", "LAST REJECTION")
    for n in sorted(nodes, key=lambda n: n.node_id):
        rejection = f"v{n.rejected_version}: {n.reject_reason}" if n.rejected_version else "—"
        add_row(
            t, n.node_id, n.address or "—", str(n.version), sync_cell(n, version),
            Text("yes", style="green") if n.connected else Text("no", style="red"),
            ago(n.last_seen_unix_ms, now_ms), Text(rejection, style="red" if n.rejected_version else ""),
        )
    return t


def usage_sink_warning(nodes: list[NodeOut]) -> str:
    """A warning naming the nodes that record no usage (INTERLOCK_USAGE_SINK=none); '' when there are none."""
    off = sorted(n.node_id for n in nodes if n.usage_sink == "none")
    if not off:
        return ""
    return (f"warning: {len(off)} node{'s' if len(off) > 1 else ''} record no usage (INTERLOCK_USAGE_SINK=none): "
            f"{', '.join(off)}. No spend, budgets reports or audit trail come from them; "
            "set INTERLOCK_USAGE_SINK=kafka in production.")


def csv_cell(v: Any) -> str:
    """A CSV cell for an API value: lists joined with ';', mappings as k=v;k=v, booleans lower-case."""
    if isinstance(v, list):
        return ";".join(csv_cell(x) for x in v)
    if isinstance(v, dict):
        return ";".join(f"{k}={csv_cell(x)}" for k, x in v.items())
    if isinstance(v, bool):
        return str(v).lower()
    return "" if v is None else str(v)


def emit_models_csv(items: list[BaseModel]) -> None:
    """API objects as CSV: one row each, the columns of their JSON form (secrets are never in API output)."""
    dumped = [i.model_dump(mode="json") for i in items]
    header = list(dumped[0]) if dumped else []
    emit_rows("csv", header, [[csv_cell(d.get(h)) for h in header] for d in dumped])


def emit_rows(output: str, header: list[str], rows: list[list[str]], *, title: str | None = None) -> None:
    """Print rows as `-o table|csv|json` (json: a list of objects keyed by the lower-cased header)."""
    import csv
    import json
    import sys

    from rich.console import Console

    if output == "json":
        keys = [h.lower().replace(" ", "_") for h in header]
        sys.stdout.write(json.dumps([dict(zip(keys, r, strict=True)) for r in rows], indent=2) + "\n")
    elif output == "csv":
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    else:
        t = table(*header, title=title)
        for r in rows:
            add_row(t, *r)
        Console(soft_wrap=False).print(t)
