"""Alembic migrations of the volume database (run from code: ``migrations/runner.py``, with the policy in ``volume_bootstrap/migrate.py``)."""
