"""A Flask app served by gunicorn: its front page says how often the migration ran."""

import os

import psycopg
from flask import Flask

# /static/ serves what the predeploy step (collect.py) collected into the release.
app = Flask(__name__, static_folder="staticfiles", static_url_path="/static")


@app.get("/")
def index() -> str:
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        row = conn.execute("SELECT count(*) FROM python_app_migrations").fetchone()
    return f"python-app: {row[0] if row else 0} migration(s)\n"
