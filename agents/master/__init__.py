"""Master host daemons: lhcd (local heart-beat daemon) and socketserver (control server)."""
