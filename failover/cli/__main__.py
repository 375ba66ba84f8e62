"""`python -m failover.cli ...`: the same command as the installed `failover`."""

from failover.cli import main

main()
