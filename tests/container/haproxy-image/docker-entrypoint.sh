#!/bin/sh
# Entrypoint of the haproxy:3.2 stand-in, with the official image's behaviour:
#   (no arguments)           -> haproxy -W -db -f /usr/local/etc/haproxy/haproxy.cfg (the CMD)
#   -f my.cfg -d             -> haproxy -W -db -f my.cfg -d   (options alone mean haproxy)
#   haproxy -c -f my.cfg     -> haproxy -W -db -c -f my.cfg
#   sh                       -> sh                            (anything else runs as given)
# -W runs a master process (reloads on SIGUSR2, soft stop on SIGUSR1); -db keeps it in the
# foreground so it stays the container's main process and logs to the container's output.
set -e

case "${1:-}" in
    -*) set -- haproxy "$@" ;;
esac

if [ "${1:-}" = haproxy ]; then
    shift
    set -- haproxy -W -db "$@"
fi

exec "$@"
