"""Region settings: codes, each region's own stores, and data dirs from before partitions."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts import InvalidInput, Unavailable
from service.runtime import open_ledger
from service.settings import load_settings

CONFIG = """
region = "sg"
[regions.sg]
database_url = "postgresql+asyncpg://fs@db.sg.internal/fairshare"
qdrant_url = "http://qdrant.sg.internal:6333"
[regions.eu]
database_url = "postgresql+asyncpg://fs@db.eu.internal/fairshare"
qdrant_url = "http://qdrant.eu.internal:6333"
"""


def test_each_region_gets_its_own_stores_and_never_another_regions(tmp_path: Path) -> None:
    config = tmp_path / "fairshare.toml"
    config.write_text(CONFIG)
    settings = load_settings({"FAIRSHARE_CONFIG": str(config), "FAIRSHARE_DATA_DIR": "d"})
    assert settings.region == "sg"
    assert settings.resolved_database_url.endswith("db.sg.internal/fairshare")
    assert (settings.qdrant_url, settings.qdrant_collection) == (
        "http://qdrant.sg.internal:6333",
        "chunks_sg",
    )
    eu = settings.for_region("eu")
    assert eu.resolved_database_url.endswith("db.eu.internal/fairshare")
    assert (eu.qdrant_url, eu.qdrant_collection) == ("http://qdrant.eu.internal:6333", "chunks_eu")
    # A region without an entry is embedded under the data dir, never sg's database.
    za = settings.for_region("za")
    assert za.resolved_database_url.endswith("d/regions/za/fairshare.db")
    assert (za.qdrant_url, za.partition_dir) == ("", Path("d/regions/za"))
    assert settings.known_regions() == ["eu", "sg"]
    # The environment names this region's stores, and only this region's.
    overridden = load_settings(
        {"FAIRSHARE_CONFIG": str(config), "FAIRSHARE_DATABASE_URL": "sqlite+aiosqlite:///x.db"}
    )
    assert overridden.resolved_database_url == "sqlite+aiosqlite:///x.db"
    assert overridden.for_region("eu").resolved_database_url.endswith("db.eu.internal/fairshare")


@pytest.mark.parametrize("region", ["SG", "s g", "../eu", "", "1eu", "x" * 33])
def test_a_region_must_be_a_safe_code(region: str) -> None:
    with pytest.raises(InvalidInput, match="not a region code"):
        load_settings({"FAIRSHARE_REGION": region})


def test_a_regions_table_holds_only_stores(tmp_path: Path) -> None:
    config = tmp_path / "fairshare.toml"
    config.write_text('[regions.eu]\ndatabase_url = "x"\ndata_dir = "/elsewhere"\n')
    with pytest.raises(InvalidInput, match=r"\[regions.eu\] may hold only database_url"):
        load_settings({"FAIRSHARE_CONFIG": str(config)})


async def test_a_data_dir_from_before_regions_is_refused_with_what_to_move(tmp_path: Path) -> None:
    (tmp_path / "fairshare.db").write_bytes(b"")
    (tmp_path / "faiss").mkdir()
    settings = load_settings({"FAIRSHARE_DATA_DIR": str(tmp_path), "FAIRSHARE_REGION": "eu"})
    with pytest.raises(Unavailable, match=r"outside any region partition \(fairshare.db, faiss\)"):
        async with open_ledger(settings):
            pass
    assert not (tmp_path / "regions").exists()
