"""Tests of the storage stage: the store on SQLite and PostgreSQL, group commit."""
