"""The release migration: creates its table once and records one row per run."""

import os

import psycopg

with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
    conn.execute("CREATE TABLE IF NOT EXISTS python_app_migrations "
                 "(id serial PRIMARY KEY, release text, at timestamptz DEFAULT now())")
    conn.execute("INSERT INTO python_app_migrations (release) VALUES (%s)",
                 (os.environ.get("DOCKYARD_RELEASE", ""),))
    count = conn.execute("SELECT count(*) FROM python_app_migrations").fetchone()
print(f"python-app: migrated (run {count[0] if count else 0})")
