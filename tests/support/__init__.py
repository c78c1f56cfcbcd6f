"""Helpers that tests share by import: local servers, project paths and configs, running
daemons, hostile payloads. Fixtures live in tests/conftest.py."""
