"""The docs name only commands and settings that exist: every `interlock <command> [<subcommand>]` written in
README.md, deploy/README.md and docs/*.md (code blocks and inline code) resolves to a real CLI command whose
--help works, and every INTERLOCK_* variable they name is read somewhere in the code."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from interlock.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", ROOT / "deploy" / "README.md", *(ROOT / "docs").glob("*.md")])
_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
_INLINE = re.compile(r"`([^`\n]+)`")
# `interlock WORD [WORD]` as a shell command: at the start, or after a prompt, pipe, `;`, `&&`, `$(`, or `-- `
_CALL = re.compile(r"(?:^|[$|;&(][ \t]*|[ \t]--[ \t]+|^[ \t]*)interlock((?:[ \t]+[a-z][a-z0-9-]*){1,2})", re.MULTILINE)
_VAR = re.compile(r"\bINTERLOCK_[A-Z0-9_]*[A-Z0-9]\b")
# Names the docs use for variables the user defines, not settings: the code reads them under whatever name the
# policy or client config gives, so they are checked for being examples of that, not for a literal read.
USER_NAMED = {
    "INTERLOCK_API_KEY": "env_key of a client's config (Codex): the client reads it",
    "INTERLOCK_ORCH_TOKEN": "admin credential token_secret: ORCH_TOKEN, read as INTERLOCK_<token_secret>",
    "INTERLOCK_ALERT_HMAC": "a destination's secret_ref: env:NAME, read under the name the policy gives",
}
CODE_DIRS = ("interlock", "interlock_contracts", "controlplane", "dataplane", "ingest", "scripts", "deploy")


def code_text(markdown: str) -> str:
    """The code in a markdown page: fenced blocks, then inline code spans (one per line)."""
    fenced = _FENCE.findall(markdown)
    rest = _FENCE.sub("", markdown)
    return "\n".join([*fenced, *_INLINE.findall(rest)])


def invocations(markdown: str) -> set[tuple[str, ...]]:
    """('keys', 'revoke'), ('status',) ...: the command words of every `interlock` call in the page's code."""
    return {tuple(m.group(1).split()) for m in _CALL.finditer(code_text(markdown))}


_LINE = re.compile(r"(?:^|[$|;&(][ \t]*|^[ \t]*)interlock((?:[ \t]+[^\s|;&#)`]+)+)", re.MULTILINE)


def documented_options(markdown: str) -> set[tuple[tuple[str, ...], str]]:
    """(command words, '--flag') for every long option written after an `interlock` call, up to a pipe or comment."""
    out = set()
    for m in _LINE.finditer(code_text(markdown)):
        tokens = m.group(1).split()
        words = tuple(t for t in tokens[:2] if re.fullmatch(r"[a-z][a-z0-9-]*", t))
        out |= {(words, t.split("=", 1)[0]) for t in tokens if re.fullmatch(r"--[a-z][a-z0-9-]*(=.*)?", t)}
    return out


def resolve(words: tuple[str, ...]) -> list[str] | None:
    """The command path the words name (a second word that is no subcommand is taken as an argument, when the
    command takes arguments), or None when the first word is no command or a group's word is unknown."""
    cmd: click.Command = cli
    path: list[str] = []
    for i, w in enumerate(words):
        if isinstance(cmd, click.Group):
            sub = cmd.commands.get(w)
            if sub is None:
                takes_args = any(isinstance(p, click.Argument) for p in cmd.params)
                return path if i and takes_args else None
            cmd, path = sub, [*path, w]
        else:
            break  # an argument of a leaf command (`interlock keys revoke vk_…`)
    return path


def documented() -> dict[tuple[str, ...], list[str]]:
    found: dict[tuple[str, ...], list[str]] = {}
    for doc in DOCS:
        for words in invocations(doc.read_text(encoding="utf-8")):
            found.setdefault(words, []).append(str(doc.relative_to(ROOT)))
    return found


def test_the_extractor_reads_shell_calls_not_prose() -> None:
    md = ("Run `interlock keys revoke -` or\n```bash\n$ interlock audit policy --since 1d\n"
          "interlock keys list -o csv | interlock keys revoke -\nKEY=$(interlock keys mint --parent vk_1)\n```\n"
          "The interlock gateway (`interlock.usage.v1`) and `pip install interlock`.\n")
    assert invocations(md) == {("keys", "revoke"), ("audit", "policy"), ("keys", "list"), ("keys", "mint")}
    assert resolve(("keys", "revoke")) == ["keys", "revoke"] and resolve(("nope",)) is None
    assert resolve(("keys", "nope")) is None and resolve(("status", "now")) == ["status"]
    # options up to the pipe belong to their own call: `-o csv` is short, `--parent` is mint's
    assert documented_options(md) == {(("audit", "policy"), "--since"), (("keys", "mint"), "--parent")}


def test_every_documented_command_exists() -> None:
    found = documented()
    assert len(found) > 20, found  # the extractor still finds the docs' commands
    unknown = {" ".join(w): docs for w, docs in found.items() if resolve(w) is None}
    assert not unknown, f"documented commands that do not exist: {unknown}"
    runner = CliRunner()
    for path in sorted({tuple(resolve(w) or ()) for w in found}):
        result = runner.invoke(cli, [*path, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, (path, result.output)


def test_every_documented_option_exists() -> None:
    """`interlock budgets --json`-style drift: a flag the docs show that the command no longer takes."""
    unknown = []
    for doc in DOCS:
        for words, flag in documented_options(doc.read_text(encoding="utf-8")):
            path = resolve(words)
            cmd: click.Command | None = cli
            for w in path or ():
                cmd = cmd.commands.get(w) if isinstance(cmd, click.Group) else cmd
            assert cmd is not None
            opts = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
            if flag not in opts:
                unknown.append(f"{doc.relative_to(ROOT)}: interlock {' '.join(path or words)} {flag}")
    assert not unknown, "documented options the command does not take:\n" + "\n".join(sorted(unknown))


def _code_corpus() -> str:
    files = [p for d in CODE_DIRS for p in (ROOT / d).rglob("*")
             if p.suffix in (".py", ".sh") and p.is_file() and "__pycache__" not in p.parts]
    return "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in files)


def is_read(var: str, code: str) -> bool:
    """Named in full, or as the quoted suffix the settings helpers prefix (`_get(env, "USAGE_SINK", ...)`);
    NAME_FILE is read by the `_secret` helper that reads NAME."""
    suffix = var.removeprefix("INTERLOCK_")
    base = suffix.removesuffix("_FILE")
    return var in code or f'"{suffix}"' in code or (base != suffix and f'_secret(env, "{base}"' in code)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_documented_variable_is_read(doc: Path) -> None:
    code = _code_corpus()
    names = set(_VAR.findall(doc.read_text(encoding="utf-8")))
    unread = sorted(v for v in names - USER_NAMED.keys() if not is_read(v, code))
    assert not unread, f"{doc.relative_to(ROOT)} names settings no code reads: {unread}"
