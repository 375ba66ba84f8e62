#!/bin/sh
# Stop Dovecot. Usage: dovecot-stop.sh [DOVECOT_CONFIG [GRACE_SECONDS]]
# SIGTERM to Dovecot's whole process group (its master leads one): usually gone in about 10 ms,
# where `dovecot stop` (SIGTERM to the master alone) keeps serving banners for a second or more.
# A master whose children are busy can sleep for seconds before it exits, still holding the
# POP3 port: after GRACE_SECONDS the group gets SIGKILL. The grace defaults to half of the
# FAILOVER_SCRIPT_TIMEOUT failover gives every script (5 s without it), so the SIGKILL comes
# before failover kills this script.
# Exit 0 when no Dovecot of this config runs afterwards, 1 otherwise.
set -u
conf=${1:-/etc/dovecot/dovecot.conf}
grace=${2:-$(awk -v t="${FAILOVER_SCRIPT_TIMEOUT:-10}" 'BEGIN { print t / 2 }')}
case $grace in
    ''|*[!0-9.]*|*.*.*|.) echo "dovecot-stop.sh: GRACE_SECONDS must be a number of seconds, not '$grace'"; exit 2 ;;
esac
base=$(/usr/bin/doveconf -c "$conf" -h base_dir) || { echo "cannot read $conf"; exit 1; }
pidfile="$base/master.pid"
alive() {  # a zombie (state Z) counts as dead
    [ -r "/proc/$1/stat" ] && [ "$(sed 's/^.*) //' "/proc/$1/stat" | cut -d' ' -f1)" != Z ]
}
# wait_gone SECONDS: until the master is dead or SECONDS have passed on the monotonic clock
# (/proc/uptime; a loaded host makes every check slower, so counting checks would overrun)
wait_gone() {
    end=$(awk -v s="$1" '{ print $1 + s }' /proc/uptime)
    while alive "$pid" && awk -v e="$end" '{ exit !($1 < e) }' /proc/uptime; do sleep 0.02; done
}
if [ ! -s "$pidfile" ]; then echo "dovecot: not running (no $pidfile)"; exit 0; fi
pid=$(cat "$pidfile")
if ! alive "$pid"; then echo "dovecot: not running (pid $pid gone)"; exit 0; fi
kill -s TERM -- "-$pid" 2>/dev/null || kill -s TERM "$pid"
wait_gone "$grace"
how="SIGTERM"
if alive "$pid"; then
    kill -s KILL -- "-$pid" 2>/dev/null || kill -s KILL "$pid"
    how="SIGKILL after a ${grace} s grace"
    wait_gone 1
fi
if alive "$pid"; then echo "dovecot: pid $pid still runs after SIGKILL"; exit 1; fi
# A login process the master forked just as the group got SIGTERM missed it, and would keep
# the listening socket open: whatever is left of the group goes too.
kill -s KILL -- "-$pid" 2>/dev/null || true
# A stop asked for is a clean stop, even when it took SIGKILL: Dovecot removes its pid file only
# when it exits by itself, and a pid file left behind would read as a crash to lhcd (which then
# restarts the service an operator just stopped). Only if it still names the master we stopped.
if [ "$(cat "$pidfile" 2>/dev/null)" = "$pid" ]; then rm -f "$pidfile"; fi
echo "dovecot: stopped (pid $pid, $how)"
