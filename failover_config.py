# failover config: the SAME file on both hosts (the Perl tool's failover_config.txt, `sub CONFIG`).
#
# After every change, on both hosts:   failover check      (replaces `perl -cw failover_config.txt`)
# It prints `failover_config.py: KEY: problem` for every problem and exits 2, or one OK line.
#
# Relative paths (scripts, SECRET_FILE, STATE_DIR, ...) are taken from this file's directory,
# and the scripts run there. Times are in seconds.

CONFIG = {
    "VERSION": "1.0",
    # The two hosts. Each host finds its own role from these names or addresses.
    "MASTER_HOST": "cfg1.example.net",
    "SLAVE_HOST": "cfg2.example.net",
    # The master's POP3 service: the slave's rhcd probes it, the master's lhcd watches it too.
    "REMOTE_POP3_HOST": "cfg1.example.net",  # default: MASTER_HOST
    "REMOTE_POP3_PORT": 110,
    "REMOTE_POP3_TIMEOUT": 10,  # one probe (greeting, and USER/PASS/STAT when a user is set)
    "SLAVE_POP3_PORT": 110,  # the slave's own POP3 service, checked after its startup scripts
    "POP3_PROBE_USER": None,  # a test mailbox makes every probe a real login (set both or neither)
    "POP3_PROBE_PASS": None,
    # The control servers: socketserver on the master, socketserver2 on the slave.
    "MONITOR_PORT": 7890,
    "MONITOR_PORT_SLAVE": 7891,
    # Shared secret of the control protocol (HMAC-SHA256). Create it once with
    # `failover keygen /etc/failover/secret`, copy it to the other host, mode 0600 on both.
    "SECRET_FILE": "/etc/failover/secret",
    # The fence chain. When the master does not acknowledge within SHUTDOWN_ACK_TIMEOUT, the slave
    # tries, in order, each step that is configured here (each gives up after FENCE_TIMEOUT):
    #   ssh           rcmd runs `failover fence-self` on the master, which stops the service through
    #                 the master's own agent and verifies it is down (needs RLOGIN_KEY_FILE and the
    #                 master's host key pinned in RLOGIN_KNOWN_HOSTS; RLOGIN_PASS works but is warned)
    #   loadbalancer  the master's server goes to maintenance in HAProxy, its sessions are cut
    #   scripts       FENCE_SCRIPTS (power off, storage fence, ...): exit 0 means fenced
    # and last, an operator's `failover confirm-fenced`. Nothing else lets the slave start.
    "RLOGIN_USER": "root",
    "RLOGIN_PORT": 22,
    "RLOGIN_KEY_FILE": None,  # for example "/etc/failover/id_ed25519"
    "RLOGIN_KNOWN_HOSTS": None,  # for example "/etc/failover/known_hosts", holding the master's host key
    # With a load balancer, the slave also puts the master's server in maintenance when it takes
    # over (so HAProxy cannot send traffic back to a "backup" master by itself) and enables its own.
    "LOAD_BALANCER": None,  # {"address": "unix:/run/haproxy/admin.sock", "backend": "pop3_pool",
    #                          "master_server": "cfg1", "slave_server": "cfg2", "timeout": 2}
    "FENCE_SCRIPTS": [],
    # A witness both hosts should reach (typically the load balancer). A master that reaches neither
    # the slave nor the witness for ISOLATION_TIMEOUT stops its service itself; a slave that cannot
    # reach the witness does not take over (it is the isolated one). `failover check` verifies that
    # the slave's earliest takeover without an ACK comes after the isolated master has stopped.
    "WITNESS": None,  # for example "lb.example.net:110"
    "ISOLATION_TIMEOUT": 30,
    "FENCE_TIMEOUT": 90,  # must exceed 2 x (SCRIPT_TIMEOUT x len(SHUTDOWN_SCRIPTS) + SERVICE_CHECK_TIMEOUT)
    # Scripts: a list, or the Perl tool's comma-separated string. Each runs in its own process
    # group, is killed after SCRIPT_TIMEOUT, and must be idempotent (an agent killed half-way runs
    # it again). They get FAILOVER_ROLE, FAILOVER_TERM, FAILOVER_EVENT, ... in their environment,
    # and FAILOVER_SCRIPT_TIMEOUT: a stop script's grace for a slow service must end before it.
    "SHUTDOWN_SCRIPTS": ["./scripts/dovecot-stop.sh"],  # on the master, on SHUTDOWN_YOUR_SERVICE
    "STARTUP_SCRIPTS": ["./scripts/dovecot-start.sh"],  # on the slave, once the master is down
    "SERVICE_PIDFILE": "/run/dovecot/master.pid",  # lhcd reports the master's service down when it dies
    # Failover triggers: each has its own flag and optional scripts, run on the slave before the
    # takeover (a failing one stops it, like BEFORE_FAILOVER_SCRIPTS). With none enabled the pair
    # is in MANUAL MODE: the slave watches and reports, only `failover switchover` moves the service.
    #   abnormal shutdown   lhcd restarted the master's service RESTART_LIMIT times within
    #                       RESTART_WINDOW and it failed again (confirmed by one failed probe of the
    #                       slave). The recommended trigger.
    #   communication loss  no contact for HEARTBEAT_TIMEOUT and PROBE_FAILURES failed probes in a
    #                       row (with a lease one, asked at half HEARTBEAT_TIMEOUT): a dead,
    #                       frozen or cut-off master, or a cut either way. None (the default): on exactly
    #                       when the pair has a lease (a LOAD_BALANCER), which makes a partition
    #                       harmless; without one it cannot tell a cut network from a dead host.
    #   normal shutdown     the master's service was stopped cleanly (its pid file removed) by someone
    #                       other than failover, or its agents were stopped cleanly (`failover stop`).
    "TRIGGER_ABNORMAL_SHUTDOWN": True,
    "TRIGGER_COMMUNICATION_LOSS": None,
    "TRIGGER_NORMAL_SHUTDOWN": False,
    "TRIGGER_ABNORMAL_SHUTDOWN_SCRIPTS": [],
    "TRIGGER_COMMUNICATION_LOSS_SCRIPTS": [],
    "TRIGGER_NORMAL_SHUTDOWN_SCRIPTS": [],
    # lhcd restarts the master's failed service itself (RESTART_SCRIPTS, default STARTUP_SCRIPTS) at
    # most RESTART_LIMIT times within RESTART_WINDOW; past that it reports an abnormal shutdown.
    # 0: no local restart, the first crash is an abnormal shutdown.
    "RESTART_LIMIT": 1,
    "RESTART_WINDOW": 600,
    # Hooks. Each gets FAILOVER_EVENT, FAILOVER_FROM_STATE, FAILOVER_TO_STATE, FAILOVER_TERM,
    # FAILOVER_REASON, FAILOVER_ROLE, FAILOVER_PEER (and FAILOVER_TRIGGER) in its environment; each
    # result is journaled. Every script also gets FAILOVER_SEQ, this host's hook number (like
    # Pacemaker's CRM_alert_node_sequence): greater at every hook, across restarts, crashes and
    # journal rotations, so a receiver can order notifications and drop duplicates by (host, seq).
    # FAILOVER_SEQ // 1000 is the `seq` of the journal entry written last before it. The scripts
    # of one hook (two NOTIFY_SCRIPTS of one transition) share its number. HARD_STOP_SCRIPTS get
    # none: the lease's kill waits for no journal write.
    #   BEFORE_FAILOVER_SCRIPTS  before anything moves: on the slave (after the trigger's scripts),
    #                            then on the master when SHUTDOWN_YOUR_SERVICE reaches it (before
    #                            its shutdown scripts). Example: hold a scheduler's jobs.
    #   AFTER_FAILOVER_SCRIPTS   once the service answers on its new host (repoint records, notify);
    #                            a failure alerts, the service stays up.
    #   NOTIFY_SCRIPTS           on every transition, in order, off the decision path.
    #   SYNC_FAILURE_SCRIPTS     when the hosts cannot synchronise (no heartbeat for HEARTBEAT_TIMEOUT).
    "BEFORE_FAILOVER_SCRIPTS": [],
    "BEFORE_FAILOVER_REQUIRED": True,  # a failing BEFORE script stops an automatic failover and holds
    "AFTER_FAILOVER_SCRIPTS": [],
    "NOTIFY_SCRIPTS": [],
    "SYNC_FAILURE_SCRIPTS": [],
    # Files that must match on both hosts, copied from the ACTIVE host to the other over SSH (the
    # RLOGIN_* settings; RLOGIN_KNOWN_HOSTS holds both hosts' keys). Each entry: a path or glob, or
    # {"path": ..., "mode": "sync" | "verify", "substitute": {"old address": "new address"}}.
    # 'verify' entries (secrets, host-specific files) are compared, never copied.
    "SYNC_FILES": [],  # for example ["/etc/dovecot", {"path": "/etc/ssl/private/mail.key", "mode": "verify"}]
    "SYNC_INTERVAL": 10,  # the ACTIVE host's agent sends what changed this often
    "SYNC_FAILURE_LIMIT": 5,  # failures in a row before automatic sync pauses (`failover sync --full` resumes)
    # Timing. The fast profile that `failover demo` and the benchmark use is:
    #   PROBE_INTERVAL 0.1, PROBE_FAILURES 3, REMOTE_POP3_TIMEOUT 0.5, HEARTBEAT_INTERVAL 0.5,
    #   HEARTBEAT_TIMEOUT 2, SHUTDOWN_ACK_TIMEOUT 10, SCRIPT_TIMEOUT 4, SERVICE_CHECK_TIMEOUT 3,
    #   CONTROL_TIMEOUT 1, RESTART_LIMIT 0
    "PROBE_INTERVAL": 5,
    "PROBE_FAILURES": 3,  # consecutive failed probes; 1 is enough when lhcd reports an abnormal shutdown
    "HEARTBEAT_INTERVAL": 0.5,  # TCP heartbeats: the fallback when the stream is silent
    "HEARTBEAT_TIMEOUT": 1,  # no two-way contact for this long; at least 5 x BEAT_INTERVAL
    # The heartbeat stream: a UDP datagram each way every BEAT_INTERVAL, on the control ports'
    # numbers (open them for UDP between the hosts). Contact is two-way: a datagram of the master
    # counts from when the master last heard the slave, so a one-way cut is a loss of contact.
    "BEAT_INTERVAL": 0.05,
    # With a LOAD_BALANCER the master serves under a lease (LEASE = False turns it off): it kills its
    # service LEASE_TIME after the last acknowledged datagram, or B = max(LEASE_TIME -
    # HEARTBEAT_TIMEOUT, LEASE_TIME / 4) after the load balancer's last word that it is in service
    # (asked every B / 4 once acknowledgements stop: a dead slave does not stop it), by SIGKILL of
    # SERVICE_PIDFILE's process tree or HARD_STOP_SCRIPTS, verified within HARD_STOP_TIMEOUT.
    # Without an ACK the slave starts only when that has surely happened: (LEASE_TIME +
    # HARD_STOP_TIMEOUT + margin) x 1.01 / 0.99 after it received the last heartbeat it granted
    # a lease for, and (B + HARD_STOP_TIMEOUT + margin) x 1.01 / 0.99 after HAProxy confirmed the
    # master MAINT (`failover check` prints the numbers; measured with these: a dead master's
    # clients are served by the slave 2.2-2.3 s after its last datagram). The master starts its
    # service (RESTART_SCRIPTS, a switchback) only under a lease renewed since its start. With a
    # lease, TRIGGER_COMMUNICATION_LOSS is on by default: a dead, cut-off or frozen master fails
    # over.
    "LEASE": True,
    "LEASE_TIME": 1.5,
    "HARD_STOP_TIMEOUT": 0.5,
    "HARD_STOP_SCRIPTS": [],
    "SHUTDOWN_ACK_TIMEOUT": 60,  # must exceed SCRIPT_TIMEOUT x len(SHUTDOWN_SCRIPTS) + SERVICE_CHECK_TIMEOUT
    "SCRIPT_TIMEOUT": 20,
    "SERVICE_CHECK_TIMEOUT": 10,
    "CONTROL_TIMEOUT": 5,
    # No ACK within SHUTDOWN_ACK_TIMEOUT: 'fence' (the slave does NOT start until the master answers
    # or an operator runs `failover confirm-fenced`) or 'takeover' (the Perl tool's behaviour: it
    # starts anyway, and a master that is alive but unreachable then serves too).
    "ON_ACK_TIMEOUT": "fence",
    "STATE_DIR": "/var/lib/failover",  # state files and journals: keep them across reboots
    "LOG_DIR": "/var/log/failover",
}
