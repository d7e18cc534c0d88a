# Sourced by .ci/setup and .ci/lock: the pinned uv, installed from PyPI into .tools/ on first use.
# One version for everyone, so a lock written on one machine is read the same way on another.
UV_VERSION=0.13.9
# Never download a Python of uv's own: the setup picks one that is on the machine.
export UV_PYTHON_DOWNLOADS=never

ensure_uv() {
    local home=".tools/uv-$UV_VERSION"
    if [ ! -x "$home/bin/uv" ]; then
        local base
        base=$(command -v python3 || command -v python) || { echo "setup: no python3 to install uv with" >&2; return 1; }
        echo "setup: installing uv $UV_VERSION into $home" >&2
        rm -rf "$home"
        "$base" -m venv "$home" >&2
        "$home/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION" >&2 \
            || { echo "setup: could not install uv $UV_VERSION from the package index" >&2; return 1; }
    fi
    echo "$home/bin/uv"
}
