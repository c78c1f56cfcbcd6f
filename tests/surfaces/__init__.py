"""Tests of the surfaces: the command line, the daemon, the HTTP endpoint, the systemd unit."""
