import pathlib, time
from tests.test_cli_policy import admin, EXAMPLE  # noqa

def test_show(admin):
    a = admin
    def show(*args):
        r = a.run(*args); print("$ interlock", *args); print(r.stdout, r.stderr)
    a.run("apply", "-f", str(EXAMPLE))
    a.run("keys", "create", "--name", "ci", "--team", "platform")
    a.run("keys", "create", "--name", "alice-laptop", "--team", "payments", "--user", "carol", "--project", "checkout", "--models", "smart,fast", "--expires", "10d")
    k = next(iter(a.service.keys))
    a.run("keys", "revoke", k)
    show("keys", "list")
