"""What a worker does besides running jobs: keeping Redis bounded once jobs end (janitor.py) and
moving what older versions left in Redis to today's layout (migrate.py)."""
