"""Helpers for benchmarks/dataplane_overhead.py: processes, upstream, gateway, load tools, report.

Importing this package puts the repository that contains it first on sys.path, so
the benchmark measures this checkout even when the installed (editable) package
points at another one.
"""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if sys.path[0] != str(REPO):
    sys.path.insert(0, str(REPO))
