"""Alembic revisions of the bot's tables (branch ``bot``), run by :func:`bot.storage.base.migrate`.

The environment is erm's (``erm/migrations/env.py``): the bot adds its ``versions/`` directory to
erm's history, and ``depends_on`` makes erm's vault table exist first (grants refer to it).
"""
