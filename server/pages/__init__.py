"""The server-rendered pages: the dashboard, job pages, forms built from the kinds' schemas, the
workers and scheduled pages, and the admin sign-in."""
