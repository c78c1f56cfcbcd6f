"""The store: one database and its parts, each keeping one kind of thing.

    store.feeds      feeds' rows, leases between instances, poll outcomes, health
    store.entries    entries and stories; recording a poll queues its alerts atomically
    store.outbox     messages waiting for their targets, claims, outcomes
    store.instances  the processes sharing the database
"""

from __future__ import annotations

from monitor.storage.database import Database
from monitor.storage.deliveries import Outbox
from monitor.storage.entries import Entries
from monitor.storage.feeds import Feeds
from monitor.storage.instances import Instances


class Store:
    """All database access of the daemon and the CLI, by what it keeps."""

    def __init__(self, url: str, create: bool = True):
        self.url = url
        self.database = Database(url, create)
        self.feeds = Feeds(self.database)
        self.entries = Entries(self.database)
        self.outbox = Outbox(self.database)
        self.instances = Instances(self.database)

    def close(self) -> None:
        """Release every pooled connection."""
        self.database.close()

    def schema_version(self) -> int:
        """The schema version recorded in the database."""
        return self.database.schema_version()
