"""SYNC_FILES: the files that must match on both hosts. files.py: what there is on one host and
how two sides compare; schema.py: the standby's inventory checked before use; peer.py: the
transfer to the standby over SSH/SFTP; receive.py: the standby's side, what it may write or
delete; auto.py: the automatic sync the ACTIVE host's agent runs."""
