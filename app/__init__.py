"""Fly Potato flight-analytics backend (FastAPI + SQLAlchemy 2 + PostGIS)."""

__version__ = "0.1.0"
