"""Alembic migrations of erm's tables (branch ``erm``); run them with :func:`erm.db.upgrade`."""
