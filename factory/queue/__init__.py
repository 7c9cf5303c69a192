"""The job queue: the job store (SQLAlchemy, SQLite or PostgreSQL), the worker, its execution backends
(local, Hugging Face Jobs, and what a Jobs run carries with it), flavors, prices and estimates.

May import run and every floor below it; never frontdoor or cli.
"""
