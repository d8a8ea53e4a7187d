"""sc_assets."""
