"""Alembic migrations of the conversation store, shipped inside the package.

They run at start-up and with `streamchat db upgrade`. To write a new one from a changed
`store/tables.py`: `alembic revision --autogenerate -m "…"` at the repository root.
"""
