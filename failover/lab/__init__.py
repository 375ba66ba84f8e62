"""The lab: a failover pair on one machine, for the demo, the benchmarks and the tests. Never
imported by the agents.

    pair       LoopbackPair (two POP3 servers, a config, both hosts' agents) and the Poller client
    pop3       Pop3Instance: a local Dovecot (or the built-in responder) on its own port
    pop3d      the built-in POP3 responder, for machines without Dovecot
    haproxy    HAProxyInstance: a local HAProxy in front of the pair
    demo       `failover demo`: the pair, a client polling, a failure to watch
"""
