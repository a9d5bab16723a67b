# Shared by scripts/run and scripts/test: a virtual environment with idp installed.
# Sourced, not run.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

say() { printf '==> %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi
}

ensure_python() {
  if ! command -v python3 >/dev/null || ! python3 -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
    echo "idp needs Python 3.11 or newer (python3)" >&2; exit 1
  fi
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    say "installing python3-venv"
    as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  fi
}

# ensure_venv [EXTRA]: create .venv and (re)install idp when pyproject.toml changed.
ensure_venv() {
  local extra="${1:-}" spec="." stamp
  [ -n "$extra" ] && spec=".[$extra]"
  ensure_python
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    python3 -m venv "$VENV"
  fi
  stamp="$VENV/.idp-installed-$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)-${extra:-base}"
  if [ ! -f "$stamp" ]; then
    say "installing idp${extra:+ with [$extra]} into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT$( [ -n "$extra" ] && echo "[$extra]")"
    rm -f "$VENV"/.idp-installed-*
    touch "$stamp"
  fi
}

# The browser tests drive Debian's chromium (never a downloaded browser).
ensure_chromium() {
  if [ ! -x /usr/bin/chromium ]; then
    say "installing Debian's chromium for the browser tests"
    as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
      || say "could not install chromium: browser tests will be skipped (they fail under CI=true)"
  fi
}

# The multi-node tests put Debian's nginx in front of several idp servers (as a load balancer);
# each test runs its own nginx with its own configuration on free ports, never the system one.
ensure_nginx() {
  if [ ! -x /usr/sbin/nginx ]; then
    say "installing Debian's nginx for the multi-node tests"
    as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null \
      || say "could not install nginx: multi-node tests will be skipped (they fail under CI=true)"
    # the package may start a system nginx on port 80; the tests never use it
    as_root service nginx stop >/dev/null 2>&1 || true
  fi
}
