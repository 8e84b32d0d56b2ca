"""Shared fixtures live in tests/fixtures/, one module per real service."""

import importlib.util

pytest_plugins = [
    name
    for name in (
        "tests.fixtures.etcd",
        "tests.fixtures.store",
        "tests.fixtures.fakeprovider",
        "tests.fixtures.gateway",
        "tests.fixtures.cluster",
        "tests.fixtures.kafka",
        "tests.fixtures.agents",
        "tests.finops_stack",
    )
    if importlib.util.find_spec(name) is not None
]
