"""Shared fixtures live in tests/fixtures/, one module per real service."""

import importlib.util

pytest_plugins = [
    name
    for name in (
        "tests.fixtures.etcd",
        "tests.fixtures.fakeprovider",
        "tests.fixtures.cluster",
    )
    if importlib.util.find_spec(name) is not None
]
