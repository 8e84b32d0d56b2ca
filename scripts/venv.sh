# Sourced by scripts/dev.sh and scripts/test.sh: pick the Python environment to install into.
#   - an active virtualenv ($VIRTUAL_ENV) is used as it is;
#   - INTERLOCK_NO_VENV=1 uses `python3` on PATH as it is (a CI image or container that owns its Python);
#   - otherwise ./.venv is created once (python3 -m venv) and activated, so nothing is pip-installed
#     into the system Python (Debian/Ubuntu refuse that: PEP 668 "externally-managed-environment").
# Installs then use constraints.txt (scripts/lock-deps.py), the dependency versions CI tested.
if [ -n "${VIRTUAL_ENV:-}" ]; then
    echo "python: using the active virtualenv $VIRTUAL_ENV"
elif [ "${INTERLOCK_NO_VENV:-0}" = 1 ]; then
    echo "python: INTERLOCK_NO_VENV=1, installing into $(command -v python3)"
else
    if [ ! -x .venv/bin/python ]; then
        echo "python: creating .venv (python3 -m venv; set INTERLOCK_NO_VENV=1 to skip)"
        python3 -m venv .venv || {
            echo "python3 -m venv failed: install the venv module (Debian/Ubuntu: apt-get install python3-venv)" >&2
            exit 1
        }
    fi
    # shellcheck disable=SC1091
    . .venv/bin/activate
    echo "python: using .venv ($(python3 --version))"
fi
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "interlock needs Python 3.11+, $(command -v python3) is $(python3 --version 2>&1)" >&2
    exit 1
}
