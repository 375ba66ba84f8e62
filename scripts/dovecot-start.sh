#!/bin/sh
# Start Dovecot (the POP3 service). Usage: dovecot-start.sh [DOVECOT_CONFIG]
# Idempotent, like every failover script must be: an agent killed half-way runs it again.
# Dovecot detaches into its own session; failover then checks that POP3 answers.
# For a system Dovecot managed by systemd, `systemctl start dovecot` does the same job.
set -eu
conf=${1:-/etc/dovecot/dovecot.conf}
base=$(/usr/bin/doveconf -c "$conf" -h base_dir) || { echo "cannot read $conf"; exit 1; }
if [ -s "$base/master.pid" ]; then
    pid=$(cat "$base/master.pid")
    if [ -r "/proc/$pid/stat" ] && [ "$(sed 's/^.*) //' "/proc/$pid/stat" | cut -d' ' -f1)" != Z ]; then
        echo "dovecot: already running (pid $pid)"
        exit 0
    fi
    # a dead (or zombie) master's pid file: Dovecot would take the zombie for a running master
    rm -f "$base/master.pid"
fi
/usr/sbin/dovecot -c "$conf"
echo "dovecot: started"
