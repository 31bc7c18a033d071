"""The job store: job records, histories, queues and indexes in Redis, each change one Lua script
(lua/), called through scripts.py with named keys and answers."""
