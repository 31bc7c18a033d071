"""Getting each event to every local watcher: the one pub/sub connection (relay.py over broker.py),
the topics watchers follow, the hub of bounded outboxes, and the events encoded once (wire.py)."""
