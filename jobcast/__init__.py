"""Shared by the web server (server/) and the workers (jobs/): settings, wire protocol, Redis store."""
