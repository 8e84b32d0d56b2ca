"""The web console in a real headless Chromium (Debian's `chromium`, driven by Playwright), against the
one-machine production stack after real traffic (tests/finops_stack.py).

Every number a page shows is checked against the CLI's JSON for the same question (`interlock spend/top/cost/
audit/budgets -o json`), which itself is checked against SQL and the clients' own view in
tests/e2e/test_usage_production.py. Screenshots of every page land in test-artifacts/console/ (gitignored).
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.finops_stack import OPERATOR_TOKEN, VIEWER_TOKEN, FinOpsStack
from tests.fixtures.cluster import ADMIN_TOKEN, chat_body, wait_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium missing: scripts/test.sh installs it")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    ctx.close()
    assert not errors, f"JavaScript errors: {errors}"


def sign_in(page: Any, stack: FinOpsStack, secret: str, then: str = "/ui/") -> None:
    page.goto(f"{stack.admin_url}{then}")
    assert "/ui/login" in page.url
    page.fill("#secret", secret)
    page.click("#signin")
    page.wait_for_load_state("load")
    assert "/ui/login" not in page.url, page.content()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_function("document.body.dataset.chartsReady === '1'")
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def cell(page: Any, selector: str) -> str:
    return str(page.locator(selector).first.get_attribute("data-value"))


def rows(page: Any, table: str, key: str) -> dict[str, dict[str, str]]:
    """{data-<key> of each row: {data-field: data-value of its cells}} (costs carry their exact value)."""
    out = page.eval_on_selector_all(
        f"[data-testid={table}] tbody tr[data-{key}]",
        f"""trs => trs.map(tr => [tr.dataset['{key}'], Object.fromEntries([...tr.querySelectorAll('[data-field]')]
            .map(td => [td.dataset.field, (td.querySelector('[data-value]') || td).dataset.value || td.textContent.trim()]))])""")
    return {k: v for k, v in out}


def test_admin_every_page_matches_the_cli(page: Any, finops: FinOpsStack) -> None:
    s = finops
    sign_in(page, s, ADMIN_TOKEN)
    assert page.inner_text("[data-testid=role]") == "admin"
    # overview: 24h spend and request count = `interlock spend --since 24h` totals
    began = time.monotonic()
    page.goto(f"{s.admin_url}/ui/")
    page.wait_for_function("document.body.dataset.chartsReady === '1'")
    print(f"\noverview fully rendered (charts drawn) in {time.monotonic() - began:.2f}s")
    day = s.cli("spend", "--by", "team", "--since", "24h")
    assert cell(page, "[data-testid=period-24h] .big [data-value]") == day["total"]["cost_usd"]
    assert cell(page, "[data-testid=requests-24h]") == str(day["total"]["requests"])
    assert page.locator("canvas[data-drawn='1']").count() == 2
    shot(page, "overview")
    # spend explorer by team, 1h
    page.goto(f"{s.admin_url}/ui/spend?by=team&since=1h&gran=5m")
    cli = {r["group"]["team"]: r for r in s.cli("spend", "--by", "team", "--since", "1h")["rows"]}
    ui = rows(page, "spend-table", "group")
    assert set(ui) == set(cli)
    for team, r in cli.items():
        assert ui[team] == {"requests": str(r["requests"]), "errors": str(r["errors"]),
                            "input_tokens": str(r["input_tokens"]), "output_tokens": str(r["output_tokens"]),
                            "cost_usd": r["cost_usd"]}
    shot(page, "spend-explorer")
    # CSV export = the same figures
    csv_text = page.evaluate("url => fetch(url).then(r => r.text())", page.get_attribute("[data-testid=csv]", "href"))
    assert sorted(csv_text.strip().splitlines()[1:]) == sorted(
        f"{t},{r['requests']},{r['errors']},{r['input_tokens']},{r['output_tokens']},{r['cached_input_tokens']},"
        f"{r['cost_usd']},{r['share_pct']}" for t, r in cli.items())
    # tag grouping through the form (a shareable URL)
    page.fill("#tag", "task")
    page.click("#apply")
    page.wait_for_load_state("load")
    assert "by=tag%3Atask" in page.url or "tag=task" in page.url
    by_task = {r["group"]["tag:task"]: r for r in s.cli("spend", "--by", "tag:task", "--since", "1h")["rows"]}
    assert {k: v["cost_usd"] for k, v in rows(page, "spend-table", "group").items()} == \
        {k: v["cost_usd"] for k, v in by_task.items()}
    # task cost
    page.goto(f"{s.admin_url}/ui/tasks?task=T-1&since=7d")
    bill = s.cli("cost", "--task", "T-1")
    ui_bill = page.eval_on_selector_all("[data-testid=task-bill] tbody tr", """trs => trs.map(tr =>
        [tr.dataset.step, tr.dataset.model, tr.querySelector('[data-field=requests]').dataset.value,
         tr.querySelector('[data-field=cost_usd] [data-value]').dataset.value])""")
    assert sorted(map(tuple, ui_bill)) == sorted((r["step"], r["model"], str(r["requests"]), r["cost_usd"])
                                                 for r in bill["rows"])
    assert cell(page, "[data-testid=task-total] [data-value]") == bill["total"]["cost_usd"]
    shot(page, "task-cost")
    # request trail for one key
    bob = s.keys["bob"]["id"]
    page.goto(f"{s.admin_url}/ui/requests?key={bob}&since=1h")
    audit = s.cli("audit", "--key", bob, "--since", "1h")
    trail = rows(page, "trail", "event")
    assert list(trail) == [r["event_id"] for r in audit["rows"]]
    assert all(trail[r["event_id"]]["cost_usd"] == r["cost_usd"] for r in audit["rows"])
    shot(page, "requests")
    # budgets: the ledger's figures, as `interlock budgets -o json`
    page.goto(f"{s.admin_url}/ui/budgets")
    budgets = {b["limit_id"]: b for b in s.budgets()["budgets"] if b["current"]}
    ui_b = rows(page, "budgets", "limit")
    assert set(ui_b) == set(budgets)
    eng = budgets["eng-monthly"]
    assert Decimal(ui_b["eng-monthly"]["settled"]) == Decimal(eng["settled"])
    assert Decimal(ui_b["eng-monthly"]["limit"].split()[0]) == Decimal(eng["limit"])
    assert page.locator("canvas[data-chart^=burn]").count() >= 1
    shot(page, "budgets")
    # policy: version, nodes in sync, masked YAML, history
    page.goto(f"{s.admin_url}/ui/policy")
    assert page.inner_text("[data-testid=policy-version]") == str(s.cluster.node_list()["version"])
    assert {n: v["in_sync"] for n, v in rows(page, "nodes", "node").items()} == {"dp-0": "yes", "dp-1": "yes"}
    assert page.locator("[data-testid=change]").count() >= 1
    assert "fake-provider-secret" not in page.content()
    shot(page, "policy")
    page.goto(f"{s.admin_url}/ui/keys")
    shot(page, "keys")


def test_drill_down_team_to_key_to_request(page: Any, finops: FinOpsStack) -> None:
    s = finops
    sign_in(page, s, VIEWER_TOKEN, "/ui/spend?by=team&since=1h")
    page.click("[data-testid=spend-table] tr[data-group=eng] [data-testid=drill]")
    page.wait_for_load_state("load")
    keys = rows(page, "spend-table", "group")
    assert set(keys) == {s.keys["alice"]["id"], s.keys["bob"]["id"]}  # team eng's keys only
    alice = s.keys["alice"]["id"]
    assert keys[alice]["requests"] == str(s.served["alice"].requests)
    page.click(f"[data-testid=spend-table] tr[data-group={alice}] [data-testid=drill]")
    page.wait_for_load_state("load")
    events = list(rows(page, "trail", "event"))
    assert sorted(events) == sorted(s.served["alice"].request_ids)
    page.click("[data-testid=request-link] >> nth=0")
    page.wait_for_load_state("load")
    assert page.inner_text("[data-testid=event-id]") == events[0]
    assert page.inner_text("[data-testid=detail] [data-field=key]") == alice
    assert page.locator("[data-testid=attempts] tbody tr").count() >= 1
    assert page.inner_text("[data-testid=detail] [data-field=status]").startswith("200")
    shot(page, "request-detail")


def _dp_status(s: FinOpsStack, secret: str) -> int:
    node = s.cluster.nodes[0]
    return httpx.post(f"{node.openai_base}/chat/completions", json=chat_body("m-a"),
                      headers={"Authorization": f"Bearer {secret}"}, timeout=10).status_code


def test_admin_creates_and_revokes_a_key_and_the_data_plane_follows(page: Any, finops: FinOpsStack) -> None:
    s = finops
    sign_in(page, s, ADMIN_TOKEN, "/ui/keys")
    page.click("summary:has-text('Create a key')")
    page.fill("#key-name", "console-made")
    page.fill("#key-team", "sandbox")  # apart from the teams whose figures other tests check
    page.click("#create")
    page.wait_for_load_state("load")
    secret = page.inner_text("[data-testid=secret]").strip()
    assert secret.startswith("sk-il-")
    key_id = page.inner_text("[data-testid=created] h2").split()[-1]
    shot(page, "key-created")
    page.reload()  # shown once: gone on the next view
    assert secret not in page.content()
    before = s.inserted()
    wait_until(lambda: _dp_status(s, secret) == 200, 20, "the new key to work at the data plane")
    page.click(f"tr[data-key={key_id}] [data-testid=revoke]")
    page.wait_for_load_state("load")
    assert page.inner_text(f"tr[data-key={key_id}] [data-field=state]") == "revoked"
    wait_until(lambda: _dp_status(s, secret) == 401, 20, "the revoked key to get 401 at the data plane")
    s.wait_ingested(before + 1)  # its served request is in ClickHouse before other tests read figures


def test_viewer_and_operator_cannot_create_or_revoke(page: Any, finops: FinOpsStack) -> None:
    s = finops
    sign_in(page, s, VIEWER_TOKEN, "/ui/keys")
    assert page.inner_text("[data-testid=role]") == "viewer"
    assert page.locator("#create-key").count() == 0 and page.locator("#mint-key").count() == 0
    assert page.locator("[data-testid=revoke]").count() == 0
    # a hand-made POST with the viewer's own valid CSRF token is refused by the console ...
    csrf = page.get_attribute("[data-testid=signout] >> xpath=.. >> input[name=csrf]", "value")
    status = page.evaluate("""([csrf, id]) => fetch('/ui/keys/' + id + '/revoke', {method: 'POST',
        headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: 'csrf=' + encodeURIComponent(csrf)})
        .then(r => r.status)""", [csrf, s.keys["alice"]["id"]])
    assert status == 403
    created = page.evaluate("""csrf => fetch('/ui/keys', {method: 'POST', headers: {'Content-Type':
        'application/x-www-form-urlencoded'}, body: 'name=x&team=eng&csrf=' + encodeURIComponent(csrf)}).then(r => r.status)""",
                            csrf)
    assert created == 403
    # ... and by the API
    api = httpx.Client(base_url=f"{s.admin_url}/admin/v1", headers={"Authorization": f"Bearer {VIEWER_TOKEN}"})
    assert api.post("/keys", json={"name": "x", "team": "eng"}).status_code == 403
    assert api.post(f"/keys/{s.keys['alice']['id']}/revoke").status_code == 403
    keys = {k["id"]: k for k in s.cluster.admin("GET", "/keys").json()["keys"]}
    assert not keys[s.keys["alice"]["id"]]["revoked"]
    # an operator mints run keys but creates no keys and revokes only run keys
    page.click("[data-testid=signout]")
    sign_in(page, s, OPERATOR_TOKEN, "/ui/keys")
    assert page.locator("#create-key").count() == 0 and page.locator("#mint-key").count() == 1
    assert page.locator(f"tr[data-key={s.keys['alice']['id']}] [data-testid=revoke]").count() == 0
    op = httpx.Client(base_url=f"{s.admin_url}/admin/v1", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
    assert op.post("/keys", json={"name": "x", "team": "eng"}).status_code == 403


def test_self_service_sees_only_its_own_key(page: Any, finops: FinOpsStack) -> None:
    s = finops
    carol, alice = s.keys["carol"], s.keys["alice"]
    minted = {}
    for owner in (carol, alice):
        r = s.cluster.admin("POST", "/keys/mint", json={"parent": owner["id"], "ttl_s": 3600, "budget_usd": "1",
                                                         "name": f"run-of-{owner['user']}"})
        assert r.status_code == 201, r.text
        minted[owner["user"]] = r.json()["id"]
    sign_in(page, s, carol["secret"])
    assert page.url.endswith("/ui/me")
    assert page.inner_text("[data-testid=my-key]") == carol["id"]
    assert cell(page, "[data-testid=my-requests]") == str(s.served["carol"].requests)
    assert cell(page, "[data-testid=my-total] [data-value]") == format(s.served["carol"].cost.quantize(
        Decimal("0.000000000001")), "f")
    events = rows(page, "trail", "event")
    assert sorted(events) == sorted(s.served["carol"].request_ids)
    run_keys = page.inner_text("[data-testid=run-keys]")
    assert minted["carol"] in run_keys and minted["alice"] not in run_keys
    budgets = page.inner_text("[data-testid=budgets]")
    assert "eng-monthly" not in budgets and "ml-rpm" not in budgets  # team limits: not this key's to see
    shot(page, "self-service")
    assert carol["secret"] not in page.content()
    # another key's data stays out of reach, whatever the URL says
    page.goto(f"{s.admin_url}/ui/requests?key={alice['id']}&since=1h")
    assert set(rows(page, "trail", "event")) == set(s.served["carol"].request_ids)
    r = page.goto(f"{s.admin_url}/ui/requests/{s.served['alice'].request_ids[0]}")
    assert r is not None and r.status == 404
    page.goto(f"{s.admin_url}/ui/spend?by=team")
    assert page.url.endswith("/ui/me")
    page.goto(f"{s.admin_url}/ui/keys")
    assert page.url.endswith("/ui/me")


def test_sessions_cookies_csrf_and_no_secrets(finops: FinOpsStack) -> None:
    s = finops
    with httpx.Client(base_url=s.admin_url) as h:
        form = h.get("/ui/login").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form)[1]  # type: ignore[index]
        bad = h.post("/ui/login", data={"csrf": csrf, "secret": "wrong-token"})
        assert bad.status_code == 303 and "error=invalid" in bad.headers["location"]
        csrf = re.search(r'name="csrf" value="([^"]+)"', h.get("/ui/login").text)[1]  # type: ignore[index]
        ok = h.post("/ui/login", data={"csrf": csrf, "secret": ADMIN_TOKEN, "next": "/ui/keys"})
        assert ok.status_code == 303 and ok.headers["location"] == "/ui/keys"
        cookie = next(c for c in ok.headers.get_list("set-cookie") if c.startswith("interlock_console="))
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
        assert ADMIN_TOKEN not in cookie and ADMIN_TOKEN not in ok.headers["location"]
        page = h.get("/ui/keys")
        assert page.status_code == 200 and ADMIN_TOKEN not in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        # no CSRF token, a wrong one, or another origin: refused, nothing created
        n_keys = len(s.cluster.admin("GET", "/keys").json()["keys"])
        assert h.post("/ui/keys", data={"name": "x", "team": "eng"}).status_code == 403
        assert h.post("/ui/keys", data={"name": "x", "team": "eng", "csrf": "guess"}).status_code == 403
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)[1]  # type: ignore[index]
        assert h.post("/ui/keys", data={"name": "x", "team": "eng", "csrf": token},
                      headers={"Origin": "http://evil.example"}).status_code == 403
        assert len(s.cluster.admin("GET", "/keys").json()["keys"]) == n_keys
        # sign-out ends the session server-side: the old cookie no longer works
        old = h.cookies.get("interlock_console")
        assert h.post("/ui/logout", data={"csrf": token}).status_code == 303
        h.cookies.set("interlock_console", old or "", path="/ui")
        after = h.get("/ui/keys")
        assert after.status_code == 303 and after.headers["location"].startswith("/ui/login")
    logs = "".join(p.log_path.read_text(errors="replace") for p in s.cluster.procs if p.log_path.exists())
    assert ADMIN_TOKEN not in logs and VIEWER_TOKEN not in logs and s.keys["carol"]["secret"] not in logs
