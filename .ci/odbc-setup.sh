#!/usr/bin/env bash
# Install unixODBC and the ODBC drivers the integration tests load (PostgreSQL,
# MariaDB, SQLite), and make sure each driver is registered in /etc/odbcinst.ini
# under the name the tests use in DRIVER={...}. Idempotent: on a machine that has
# everything it changes nothing and needs no network.
set -euo pipefail

PACKAGES=(unixodbc unixodbc-dev odbcinst odbc-postgresql odbc-mariadb libsqliteodbc sqlite3)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then missing+=("$p"); fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "odbc-setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "odbc-setup: packages present"
fi

# Where Debian puts ODBC driver libraries (multiarch path, e.g. /usr/lib/x86_64-linux-gnu/odbc).
find_lib() {
  local f
  for f in /usr/lib/*/odbc/"$1" /usr/lib/odbc/"$1" /usr/lib/*/"$1"; do
    if [ -e "$f" ]; then echo "$f"; return 0; fi
  done
  return 1
}

# name|library|description — the names Debian's packages register; some versions of
# odbc-mariadb and libsqliteodbc did not register themselves, so do it when absent.
DRIVERS=(
  "PostgreSQL Unicode|psqlodbcw.so|PostgreSQL ODBC driver (Unicode version)"
  "MariaDB Unicode|libmaodbc.so|MariaDB Connector/ODBC (Unicode)"
  "SQLite3|libsqlite3odbc.so|SQLite3 ODBC Driver"
)
for entry in "${DRIVERS[@]}"; do
  IFS='|' read -r name lib desc <<<"$entry"
  if odbcinst -q -d -n "$name" >/dev/null 2>&1; then
    echo "odbc-setup: driver [$name] registered"
    continue
  fi
  path="$(find_lib "$lib")" || { echo "odbc-setup: $lib not found after install" >&2; exit 1; }
  tmp="$(mktemp)"
  printf '[%s]\nDescription=%s\nDriver=%s\nUsageCount=1\n' "$name" "$desc" "$path" >"$tmp"
  odbcinst -i -d -f "$tmp" >/dev/null
  rm -f "$tmp"
  echo "odbc-setup: registered driver [$name] -> $path"
done

odbcinst -q -d
