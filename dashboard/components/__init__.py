"""Reusable pieces of the dashboard: figures and small layout helpers."""
