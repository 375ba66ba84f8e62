#!/bin/sh
# Set up a development or CI machine (Debian 12): the real components the tests and the demo
# use, and a virtualenv in .venv with failover installed in it. Safe to run again.
set -eu
cd "$(dirname "$0")/.."

need_apt=""
for binary in /usr/sbin/dovecot /usr/sbin/sshd /usr/sbin/haproxy /usr/sbin/ip /usr/bin/rsync; do
    [ -x "$binary" ] || need_apt=yes
done
if [ -n "$need_apt" ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        echo "setup: installing Debian packages (dovecot-pop3d, openssh-server, haproxy, iproute2, rsync)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends dovecot-pop3d openssh-server haproxy iproute2 procps rsync >/dev/null
    else
        echo "setup: Dovecot is missing and this is not root on Debian: the demo will use the built-in POP3 responder" >&2
    fi
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
echo "setup: done (.venv/bin/failover)"
