"""The agents: thin daemons around failover.machine."""
