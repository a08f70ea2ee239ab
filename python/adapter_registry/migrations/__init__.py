"""Alembic migrations of the registry's schema, for SQLite and PostgreSQL alike (see schema.py)."""
