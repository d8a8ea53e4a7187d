"""Shared fixtures: every test gets its own data root; nothing touches ./data."""

from __future__ import annotations

from pathlib import Path

import pytest

from sc_assets.resources import Warehouse
from sc_assets_tests.simulated import small_market  # noqa: F401  (session fixture: the shared simulated market)

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data root, also exported as SC_ASSETS_DATA_DIR for code that reads the env."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("SC_ASSETS_DATA_DIR", str(root))
    return root


@pytest.fixture
def warehouse(data_dir: Path) -> Warehouse:
    return Warehouse(data_dir=str(data_dir))
