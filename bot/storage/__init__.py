"""The bot's state in the database: every rule here is held by the database, not by process memory,
so it holds when several bot processes share one database.

- :mod:`.base`: the declarative base, migrations, checked values, and :class:`.base.Store`, the
  unit of work the stores share (a step is written once; alone it is one transaction, and the
  dispatcher groups several stores' steps into one).
- :mod:`.grants`, :mod:`.requests` (request keys claimed once), :mod:`.codes` and :mod:`.locks`
  (issued codes, per-item locks), :mod:`.limits` (rate counters), :mod:`.buttons`,
  :mod:`.invites`, and the approval flow's :mod:`.approval_tables`, :mod:`.approval_settings`,
  :mod:`.approvals` and :mod:`.approval_cards`; :mod:`.held` (messages the bot started that a
  platform refused until the user writes again, kept sealed for their next message).

On SQLite every transaction starts with ``BEGIN IMMEDIATE`` (see :mod:`erm.db`), so writers queue;
on PostgreSQL the statements themselves are atomic. The statements of the hot path are built once
per store with bound parameters: building a SQLAlchemy statement anew costs several times what
running it does. The tables belong to the Alembic branch ``bot`` (``bot/migrations/versions``).
Unlock codes are stored only as ciphertext (:mod:`bot.code_secrets`).
"""
