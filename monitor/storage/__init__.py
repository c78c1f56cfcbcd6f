"""Storage: the database — its tables, the store and its parts (feeds and leases, entries and
stories, the outbox, instances), and group commit for many small writes."""
