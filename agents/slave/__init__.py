"""Slave host daemons: rhcd (remote health-check daemon) and socketserver2 (control server)."""
