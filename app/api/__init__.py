"""HTTP routes: ``/api/*`` (authenticated) and the ops endpoints."""
