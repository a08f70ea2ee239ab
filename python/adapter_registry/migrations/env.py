"""Alembic's entry point: run the migrations on the connection schema.py hands over, inside the
transaction (and the lock) it already holds."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()
