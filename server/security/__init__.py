"""Who may do what: owners and roles (auth.py), stream tokens, what other origins may do, and the
security headers."""
