"""The programs the Perl tool named (lhcd, socketserver, rhcd, socketserver2, rcmd): thin mains
over failover/, which holds all of their code."""
