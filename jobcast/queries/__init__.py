"""What the API and the pages read over the store: listings, counters, the dashboard feed, finished
jobs over time, scheduled work, and the live workers."""
