#!/usr/bin/env bash
# The Debian packages the tests need beyond Python, installed only when missing (CI runs on a
# fresh machine as root; a developer's machine usually has them already).
#   postgresql: a throwaway cluster per test worker for the real-Postgres concurrency tests.
#   chromium: the browser Playwright drives in the UI tests (Playwright never downloads one).
#   redis-server: the Celery broker of the production-shaped topology test.
#   libgomp1: the OpenMP runtime LightGBM's wheel links against (the example delivery pipeline).
# To add a package: one line in NEEDED, "package|a path that exists once it is installed".
set -euo pipefail

NEEDED=(
  "postgresql|/usr/lib/postgresql/*/bin/initdb"
  "chromium|/usr/bin/chromium"
  "redis-server|/usr/bin/redis-server"
  "libgomp1|/usr/lib/*-linux-gnu/libgomp.so.1"
)

missing=()
for entry in "${NEEDED[@]}"; do
  package="${entry%%|*}"
  probe="${entry#*|}"
  if ! compgen -G "$probe" >/dev/null; then
    missing+=("$package")
  fi
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-system-deps: missing ${missing[*]}; run this script as root (or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "install-system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "install-system-deps: apt-get failed (output above)" >&2
  exit 1
fi
