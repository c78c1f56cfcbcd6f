"""Surfaces: how people and machines reach monitor — the command line, the daemon and its
HTTP endpoint, and the status and match reports they show."""
