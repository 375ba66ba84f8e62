#!/bin/sh
# Start Dovecot (the POP3 service). Usage: dovecot-start.sh [DOVECOT_CONFIG]
# Dovecot detaches into its own session; failover then checks that POP3 answers.
# For a system Dovecot managed by systemd, `systemctl start dovecot` does the same job.
set -eu
conf=${1:-/etc/dovecot/dovecot.conf}
exec /usr/sbin/dovecot -c "$conf"
