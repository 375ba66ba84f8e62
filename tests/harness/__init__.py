"""What the tests and bench/ share (bench/ imports no other test module):

pair       the tests' fast timings (QUICK) and starting a loopback pair until its agents talk
sshd       a real OpenSSH server on a loopback port or in a network namespace
network    three hosts on one machine: network namespaces, links, routes
relay      a lossy link between two namespaces
cluster    master, slave and a client with HAProxy on those three hosts, ready to fail
"""
