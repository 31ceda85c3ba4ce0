#!/bin/sh
# Starts the demo PostgreSQL server. On the first start (an empty $PGDATA) it creates the
# cluster and the databases app1 and app2, each with a table whoami holding its own name; later
# starts reuse the volume. Demo only: every connection is trusted without a password.
# Environment: PGPORT (default 5432), LISTEN_ADDRESSES (default '*'; the tests use 127.0.0.1).
set -eu
port=${PGPORT:-5432}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    initdb -D "$PGDATA" -U postgres -A trust >/dev/null
    # Clients come from other containers (HAProxy forwards them): trust them, as the demo
    # trusts loopback.
    echo "host all all all trust" >>"$PGDATA/pg_hba.conf"
    # A private server for the set-up: Unix socket only, so nothing can connect to a cluster
    # whose databases do not exist yet (the health check waits for the real start).
    pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -p $port" start >/dev/null
    for db in app1 app2; do
        createdb -p "$port" "$db"
        psql -q -X -p "$port" -d "$db" -c "create table whoami as select '$db'::text as database"
    done
    pg_ctl -D "$PGDATA" -w -m fast stop >/dev/null
    echo "created databases app1 and app2"
fi

exec postgres -D "$PGDATA" -p "$port" -c "listen_addresses=${LISTEN_ADDRESSES:-*}"
