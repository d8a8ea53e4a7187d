"""Pure pandas/numpy analytics (no Dagster imports). Units and conventions in each docstring."""
