#!/bin/sh
# Stop Dovecot at once. Usage: dovecot-stop.sh [DOVECOT_CONFIG]
# SIGTERM to Dovecot's whole process group (its master leads one): it is gone in about 10 ms,
# where `dovecot stop` (SIGTERM to the master alone) keeps serving banners for a second or more.
# Exit 0 when no Dovecot of this config runs afterwards, 1 otherwise.
set -u
conf=${1:-/etc/dovecot/dovecot.conf}
base=$(/usr/bin/doveconf -c "$conf" -h base_dir) || { echo "cannot read $conf"; exit 1; }
pidfile="$base/master.pid"
alive() {  # a zombie (state Z) counts as dead
    [ -r "/proc/$1/stat" ] && [ "$(sed 's/^.*) //' "/proc/$1/stat" | cut -d' ' -f1)" != Z ]
}
if [ ! -s "$pidfile" ]; then echo "dovecot: not running (no $pidfile)"; exit 0; fi
pid=$(cat "$pidfile")
if ! alive "$pid"; then echo "dovecot: not running (pid $pid gone)"; exit 0; fi
kill -s TERM -- "-$pid" 2>/dev/null || kill -s TERM "$pid"
i=0
while alive "$pid" && [ $i -lt 250 ]; do sleep 0.02; i=$((i + 1)); done
if alive "$pid"; then
    kill -s KILL -- "-$pid" 2>/dev/null || kill -s KILL "$pid"
    sleep 0.2
fi
if alive "$pid"; then echo "dovecot: pid $pid still runs"; exit 1; fi
# A login process the master forked just as the group got SIGTERM missed it, and would keep
# the listening socket open: whatever is left of the group goes too.
kill -s KILL -- "-$pid" 2>/dev/null || true
echo "dovecot: stopped (pid $pid)"
