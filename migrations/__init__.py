"""Alembic migrations of the volume database (run from code by volume_bootstrap.migrate)."""
