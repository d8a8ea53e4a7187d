"""SQL-model assets: one asset per file in ``dbt_like_sql/`` (staging and marts layers).

Built by :func:`sc_assets.sql_models.build_sql_assets` when this module is imported, so a bad
ref, a cycle or a SQL syntax error fails definitions loading with the file and line named.
"""

from __future__ import annotations

from sc_assets.sql_models import build_sql_assets

sql_model_assets = build_sql_assets()
