"""``python -m app``: serve on the port from settings (dev 8000, prod 80)."""

from app.main import run

run()
