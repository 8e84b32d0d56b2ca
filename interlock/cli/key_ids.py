"""Key ids for `interlock keys revoke`: from arguments, or from stdin when an argument is '-'.

Stdin takes what `interlock keys list -o csv` (or `-o json | jq -r '.[].id'`) prints, filtered or not: one key
per line, its id the first CSV field; the CSV header, blank lines and `#` comments are skipped. Every id is
checked before anything is sent, so a stray secret or a malformed line revokes nothing.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import TextIO

import click


def key_ids(args: Iterable[str], stdin: TextIO) -> list[str]:
    """The ids to act on, in order, without duplicates; click.BadParameter naming the first bad one."""
    out: list[str] = []
    for arg in args:
        found = _from_lines(stdin) if arg == "-" else [(arg, "argument")]
        for key_id, where in found:
            if key_id.startswith("sk-"):
                raise click.BadParameter(f"{where}: that looks like a key's secret; pass its id (vk_…) from "
                                         "`interlock keys list`", param_hint="KEY_ID")
            if not key_id.startswith("vk_"):
                raise click.BadParameter(f"{where}: {key_id!r} is not a key id (vk_…); pipe `interlock keys list "
                                         "-o csv` or pass ids as arguments", param_hint="KEY_ID")
            if key_id not in out:
                out.append(key_id)
    return out


def _from_lines(stdin: TextIO) -> list[tuple[str, str]]:
    if stdin.isatty():
        raise click.BadParameter("'-' reads key ids from stdin, which is a terminal: pipe them in, e.g. "
                                 "`interlock keys list -o csv | grep ci | interlock keys revoke -`", param_hint="KEY_ID")
    found = []
    for n, line in enumerate(stdin, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        first = next(csv.reader([line]), [""])[0].strip()
        if n == 1 and first == "id":  # the CSV header
            continue
        found.append((first, f"stdin line {n}"))
    if not found:
        raise click.BadParameter("no key ids on stdin (nothing was revoked)", param_hint="KEY_ID")
    return found
