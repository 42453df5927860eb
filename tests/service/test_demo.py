"""`fairshare demo` is what `make run` runs: it must be safe to run again and again."""

from __future__ import annotations

from service.demo import demo_keys, load_demo_catalog
from service.runtime import Runtime


async def test_reloading_the_demo_changes_nothing(demo_runtime: Runtime) -> None:
    generations = await demo_runtime.catalog.generations()
    reports = await load_demo_catalog(demo_runtime, progress=False)
    assert sum(r.unchanged for r in reports) >= 150
    assert all(r.added == r.changed == r.removed == r.chunks_written == 0 for r in reports)
    assert await demo_runtime.catalog.generations() == generations


async def test_demo_keys_are_reused_while_they_work(demo_runtime: Runtime) -> None:
    first = await demo_keys(demo_runtime, "northwind-health")
    assert await demo_keys(demo_runtime, "northwind-health") == first
    principal = await demo_runtime.keys.authenticate(first.owner)
    assert (principal.role, principal.owner_id) == ("owner", "northwind-health")
    assert (await demo_runtime.keys.authenticate(first.agent)).role == "agent"
    assert (demo_runtime.settings.partition_dir / "demo-keys.json").stat().st_mode & 0o077 == 0
