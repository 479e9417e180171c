#!/usr/bin/env bash
# Starts a throwaway PostgreSQL on a free loopback port (installing it from Debian if needed) and
# prints a SQLAlchemy URL for it. The cluster lives under a temp dir and stops with the machine.
set -euo pipefail
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
data=$(mktemp -d /tmp/emoflow-pg.XXXXXX)
chown postgres: "$data"
# initdb refuses to run as root; the Debian package creates the postgres user
su postgres -s /bin/sh -c "$bin/initdb -D $data/db -A trust -U postgres --no-sync" >&2
su postgres -s /bin/sh -c "$bin/pg_ctl -D $data/db -l $data/log -w \
  -o '-c listen_addresses=127.0.0.1 -p $port -k $data -c fsync=off'  start" >&2
su postgres -s /bin/sh -c "psql -h 127.0.0.1 -p $port -U postgres -qc 'CREATE DATABASE emoflow_test'" >&2
echo "postgresql+psycopg://postgres@127.0.0.1:$port/emoflow_test"
