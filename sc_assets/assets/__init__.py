"""Thin Dagster wrappers, one module per layer. ``definitions.py`` loads every module here."""
