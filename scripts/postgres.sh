#!/usr/bin/env bash
# A PostgreSQL server on this machine for the shared catalog's tests (or a developer's own shared catalog):
# installs PostgreSQL where it is missing (Debian), starts a cluster listening on localhost, makes a role that may
# create databases (the tests make one each) and a database of its name, and prints the URL as an export line:
#   eval "$(sudo scripts/postgres.sh)"     # then XEONFT_TEST_POSTGRES=postgresql://xeonft:...@localhost:5432/xeonft
# Idempotent: a second run starts nothing that runs and changes nothing that exists. Run as root (or with sudo).
# The role's password is made once, at random, and kept in a file only root reads ($XEONFT_PG_PASSWORD_FILE).
set -euo pipefail
ROLE=${XEONFT_PG_ROLE:-xeonft}
DB=${XEONFT_PG_DATABASE:-xeonft}
PASSWORD_FILE=${XEONFT_PG_PASSWORD_FILE:-/var/lib/postgresql/xeonft-test.password}
say() { echo "postgres.sh: $*" >&2; }
# The server outlives this script: it must not inherit the caller's open files (a `flock LOCK scripts/postgres.sh`
# would otherwise leave LOCK held by the server for as long as it runs).
for fd in /proc/$$/fd/*; do
  n=${fd##*/}
  [ "$n" -gt 2 ] && eval "exec $n>&-" 2>/dev/null || true
done
# Only the last line goes to stdout, which the caller evals: everything before it writes to stderr (pg_ctlcluster
# says "Removed stale pid file" on stdout where a machine image kept one, and that must not be run as a command).
{

if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  say "installing PostgreSQL"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
VERSION=$(ls /usr/lib/postgresql | sort -V | tail -1)
BIN=/usr/lib/postgresql/$VERSION/bin
as_postgres() { runuser -u postgres -- "$@"; }

if command -v pg_ctlcluster >/dev/null; then  # Debian's wrapper: the packaged cluster
  if ! pg_lsclusters -h | awk '{print $1, $2}' | grep -qx "$VERSION main"; then
    pg_createcluster "$VERSION" main >/dev/null
  fi
  SOCKET=/var/run/postgresql
  PORT=$(pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main" {print $3}')
  if ! pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main" {print $4}' | grep -q online; then
    say "starting cluster $VERSION/main on port $PORT"
    pg_ctlcluster "$VERSION" main start
  fi
else  # PostgreSQL without the wrapper: a cluster of our own in postgres's home
  PORT=${XEONFT_PG_PORT:-5432}
  SOCKET=/tmp
  DATA=/var/lib/postgresql/$VERSION/xeonft
  if [ ! -s "$DATA/PG_VERSION" ]; then
    install -d -o postgres -g postgres "$DATA"
    as_postgres "$BIN/initdb" -D "$DATA" --auth-local=peer --auth-host=scram-sha-256 >/dev/null
  fi
  if ! as_postgres "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    say "starting $DATA on port $PORT"
    as_postgres "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -o "-p $PORT -k /tmp -c listen_addresses=localhost" start >/dev/null
  fi
fi
for _ in $(seq 60); do
  "$BIN/pg_isready" -q -h localhost -p "$PORT" && break
  sleep 0.5
done
"$BIN/pg_isready" -q -h localhost -p "$PORT" || { say "the server on port $PORT does not answer"; exit 1; }

if [ ! -s "$PASSWORD_FILE" ]; then
  (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=\n' >"$PASSWORD_FILE")
fi
PASSWORD=$(cat "$PASSWORD_FILE")
# each statement made only where it is missing (\gexec runs what the SELECT builds); as postgres, over the socket
as_postgres psql -q -X -v ON_ERROR_STOP=1 -h "$SOCKET" -p "$PORT" -d postgres -v role="$ROLE" -v db="$DB" \
  -v password="$PASSWORD" >/dev/null <<'SQL'
SELECT format('CREATE ROLE %I LOGIN CREATEDB', :'role') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role')\gexec
SELECT format('ALTER ROLE %I LOGIN CREATEDB PASSWORD %L', :'role', :'password')\gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db')\gexec
SQL
} >&2
echo "export XEONFT_TEST_POSTGRES=postgresql://$ROLE:$PASSWORD@localhost:$PORT/$DB"
