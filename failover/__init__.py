"""failover: two-host failover for a service that runs on one host at a time."""
