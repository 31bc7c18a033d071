"""The REST API's handlers: submitting, reading, cancelling and retrying jobs, listings and stats,
results, bulk actions, pausing kinds, and the article's original endpoints."""
