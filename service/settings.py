"""Settings, declared once with their help text (the README table is checked against this).

Sources, later wins: defaults, the TOML file named by FAIRSHARE_CONFIG, FAIRSHARE_* variables.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from contracts import InvalidInput
from ranking.embedder import EMBEDDER_BACKENDS
from ranking.rerank import BACKENDS as RERANKER_BACKENDS
from service.sizing import model_threads, worker_count


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    default: str
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "data_dir",
        "var",
        "Directory holding each region's partition (<data dir>/regions/<region>: the SQLite "
        "catalog/ledger, FAISS, BM25 and Qdrant files) and the model caches.",
    ),
    Setting(
        "region",
        "local",
        "Region this deployment stores, embeds and serves content in, a lowercase code such as "
        "sg, id, eu or za. It opens only that region's partition, and serves only datasets "
        "whose licence allows processing there.",
    ),
    Setting(
        "database_url",
        "",
        "SQLAlchemy async URL; empty means SQLite in the data dir. PostgreSQL: postgresql+asyncpg://...",
    ),
    Setting(
        "qdrant_url", "", "Qdrant server URL; empty means Qdrant local mode under the data dir."
    ),
    Setting("vector_backend", "faiss", "Dense index that serves searches: faiss or qdrant."),
    Setting(
        "embedder_model",
        "all-MiniLM-L6-v2",
        "sentence-transformers name or path; the default loads the packaged weights.",
    ),
    Setting(
        "embedder_backend",
        "onnx",
        "How the embedder runs: torch, onnx (fp32 ONNX Runtime) or onnx-int8 (dynamically "
        "quantized), exported once into <data dir>/embedder-onnx. See README, Measured.",
    ),
    Setting(
        "embedder_languages",
        "en",
        "Comma-separated ISO 639-1 languages the embedder reads well, or * for any; dense "
        "candidates in other languages get no weight in hybrid fusion.",
    ),
    Setting(
        "reranker_model",
        "",
        "CrossEncoder name or path; empty or unloadable means the rerank stage is skipped.",
    ),
    Setting(
        "reranker_backend",
        "onnx",
        "How the cross-encoder runs: torch, onnx (fp32 ONNX Runtime) or onnx-int8 (dynamically "
        "quantized). ONNX is exported once from the model's weights into <model dir>/onnx, or "
        "<data dir>/reranker-onnx when that is not writable.",
    ),
    Setting("rerank_depth", "30", "How many fused candidates the cross-encoder rescores."),
    Setting(
        "candidate_depth", "100", "Candidates taken from each of the dense and BM25 retrievers."
    ),
    Setting(
        "batch_max_size",
        "32",
        "Most query embeddings, or most searches' rerank heads, that concurrent searches share "
        "in one model call.",
    ),
    Setting(
        "batch_max_wait_ms",
        "2",
        "Longest a batch waits, in milliseconds, for searches in flight to join it; a lone "
        "search never waits. 0 batches only what queued while the model was busy.",
    ),
    Setting(
        "receipt_key_file",
        "",
        "Ed25519 private key (PEM) that signs search receipts; empty means "
        "<data dir>/receipt-signing-key.pem, created on first start. Share it across replicas.",
    ),
    Setting("stripe_api_key", "", "Stripe secret key for owner payouts (Connect transfers)."),
    Setting(
        "stripe_api_base",
        "",
        "Stripe API base URL; empty means Stripe's own. Tests point it at a fake.",
    ),
    Setting(
        "payout_minimum_micros",
        "10000000",
        "Smallest payout, in micros of the owner's currency; less is carried forward.",
    ),
    Setting(
        "rate_limit_per_minute",
        "600",
        "Requests each API key may make per minute, sustained, over all authenticated /v1 routes "
        "together; more get 429 with Retry-After. 0 turns rate limits off.",
    ),
    Setting(
        "rate_limit_burst",
        "60",
        "Requests a key may make at once, after a pause, before the per-minute rate applies.",
    ),
    Setting(
        "redis_url",
        "",
        "Redis URL (redis://, rediss:// or unix://) that holds the rate limits, so that every "
        "replica shares one budget per key; empty keeps them in this process (one budget per "
        "process).",
    ),
    Setting(
        "workers",
        "auto",
        "Worker processes `fairshare serve` runs on one port, each with the indexes (read-only, "
        "memory-mapped) and one shared ledger database; auto: one per 4 cores (README, Workers). "
        "More than one needs FAISS serving or a Qdrant server, not Qdrant local mode.",
    ),
    Setting(
        "model_threads",
        "auto",
        "Threads each `fairshare serve` worker's embedder and cross-encoder use per call; auto: "
        "the cores divided among the workers. Other commands use every core.",
    ),
    Setting("host", "127.0.0.1", "Address `fairshare serve` binds."),
    Setting("port", "8000", "Port `fairshare serve` listens on."),
)
ENV_PREFIX = "FAIRSHARE_"
# Region codes name directories and Qdrant collections, so they are kept to a safe alphabet.
REGION_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


@dataclass(frozen=True, slots=True)
class RegionStores:
    """Where one region's partition lives when it is not embedded under the data dir: its own
    database and Qdrant server (from `[regions.<code>]` tables in the FAIRSHARE_CONFIG file)."""

    database_url: str = ""
    qdrant_url: str = ""


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path
    region: str
    database_url: str
    qdrant_url: str
    vector_backend: str
    embedder_model: str
    embedder_backend: str
    embedder_languages: str
    reranker_model: str
    reranker_backend: str
    rerank_depth: int
    candidate_depth: int
    batch_max_size: int
    batch_max_wait_ms: int
    receipt_key_file: str
    stripe_api_key: str
    stripe_api_base: str
    payout_minimum_micros: int
    rate_limit_per_minute: int
    rate_limit_burst: int
    redis_url: str
    workers: str
    model_threads: str
    host: str
    port: int
    # Every region's stores, by code (TOML only); the current region's FAIRSHARE_DATABASE_URL
    # and FAIRSHARE_QDRANT_URL, when set, win over its entry here.
    regions: Mapping[str, RegionStores] = field(default_factory=dict)

    @property
    def partition_dir(self) -> Path:
        """This region's data directory: nothing of another region's content is ever in it."""
        return self.data_dir / "regions" / self.region

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.partition_dir / 'fairshare.db').resolve()}"

    @property
    def qdrant_collection(self) -> str:
        """This region's Qdrant collection: regions sharing one Qdrant server stay apart."""
        return f"chunks_{self.region}"

    def known_regions(self) -> list[str]:
        """Regions with configured stores or an embedded partition under the data dir, and this
        one: what admin commands that span regions (residency, revocation) visit."""
        found = set(self.regions) | {self.region}
        root = self.data_dir / "regions"
        if root.is_dir():
            found |= {p.name for p in root.iterdir() if p.is_dir() and REGION_PATTERN.match(p.name)}
        return sorted(found)

    def for_region(self, region: str) -> Settings:
        """These settings as a deployment in `region` would have them: its own stores, never
        this region's database or Qdrant URL."""
        if region == self.region:
            return self
        check_region(region)
        stores = self.regions.get(region, RegionStores())
        return replace(
            self, region=region, database_url=stores.database_url, qdrant_url=stores.qdrant_url
        )

    @property
    def receipt_key_path(self) -> Path:
        return Path(self.receipt_key_file or self.data_dir / "receipt-signing-key.pem")

    @property
    def embedder_language_set(self) -> frozenset[str] | None:
        if self.embedder_languages.strip() == "*":
            return None
        return frozenset(
            code.strip().lower() for code in self.embedder_languages.split(",") if code.strip()
        )

    @property
    def worker_count(self) -> int:
        return worker_count(self.workers)

    @property
    def model_thread_count(self) -> int:
        return model_threads(self.model_threads, self.worker_count)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def check_region(region: str) -> str:
    if not REGION_PATTERN.match(region):
        raise InvalidInput(
            f"region {region!r} is not a region code: lowercase letters, digits and '-', "
            "starting with a letter, at most 32 characters (e.g. sg, eu, za)"
        )
    return region


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if environ is None else environ)
    raw: dict[str, str] = {s.name: s.default for s in SETTINGS}
    regions: dict[str, RegionStores] = {}
    config_file = env.get(ENV_PREFIX + "CONFIG")
    if config_file:
        try:
            table = tomllib.loads(Path(config_file).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise InvalidInput(f"cannot read FAIRSHARE_CONFIG {config_file!r}: {exc}") from exc
        regions = _region_stores(table.pop("regions", {}), config_file)
        unknown = set(table) - set(raw)
        if unknown:
            raise InvalidInput(f"unknown settings in {config_file}: {sorted(unknown)}")
        raw.update({k: str(v) for k, v in table.items()})
    for setting in SETTINGS:
        value = env.get(ENV_PREFIX + setting.name.upper())
        if value is not None:
            raw[setting.name] = value
    return _build(raw, regions)


def _region_stores(table: Any, config_file: str) -> dict[str, RegionStores]:
    """`[regions.<code>]` tables: each region's database_url and qdrant_url."""
    if not isinstance(table, dict):
        raise InvalidInput(f"{config_file}: `regions` must be a table of [regions.<code>] tables")
    stores: dict[str, RegionStores] = {}
    known = {f.name for f in fields(RegionStores)}
    for code, entry in table.items():
        check_region(code)
        if not isinstance(entry, dict) or set(entry) - known:
            raise InvalidInput(
                f"{config_file}: [regions.{code}] may hold only {', '.join(sorted(known))}"
            )
        stores[code] = RegionStores(**{k: str(v) for k, v in entry.items()})
    return stores


def _build(raw: dict[str, str], regions: dict[str, RegionStores]) -> Settings:
    values: dict[str, Any] = {"regions": regions}
    for f in fields(Settings):
        if f.name == "regions":
            continue
        value = raw[f.name]
        if f.type in ("int", int):
            try:
                values[f.name] = int(value)
            except ValueError:
                raise InvalidInput(
                    f"FAIRSHARE_{f.name.upper()} must be an integer, got {value!r}"
                ) from None
        elif f.type in ("Path", Path):
            values[f.name] = Path(value)
        else:
            values[f.name] = value
    region = check_region(values["region"])
    # The current region's own entry supplies its stores unless the environment names them.
    own = regions.get(region, RegionStores())
    values["database_url"] = values["database_url"] or own.database_url
    values["qdrant_url"] = values["qdrant_url"] or own.qdrant_url
    if values["vector_backend"] not in ("faiss", "qdrant"):
        raise InvalidInput("FAIRSHARE_VECTOR_BACKEND must be 'faiss' or 'qdrant'")
    if values["embedder_backend"] not in EMBEDDER_BACKENDS:
        raise InvalidInput(
            f"FAIRSHARE_EMBEDDER_BACKEND must be one of {', '.join(EMBEDDER_BACKENDS)}"
        )
    if values["reranker_backend"] not in RERANKER_BACKENDS:
        raise InvalidInput(
            f"FAIRSHARE_RERANKER_BACKEND must be one of {', '.join(RERANKER_BACKENDS)}"
        )
    if values["batch_max_size"] < 1:
        raise InvalidInput("FAIRSHARE_BATCH_MAX_SIZE must be >= 1")
    if values["batch_max_wait_ms"] < 0:
        raise InvalidInput("FAIRSHARE_BATCH_MAX_WAIT_MS must be >= 0")
    if values["payout_minimum_micros"] < 0:
        raise InvalidInput("FAIRSHARE_PAYOUT_MINIMUM_MICROS must be >= 0")
    if values["rate_limit_per_minute"] < 0:
        raise InvalidInput("FAIRSHARE_RATE_LIMIT_PER_MINUTE must be >= 0 (0: no limit)")
    if values["rate_limit_burst"] < 1:
        raise InvalidInput("FAIRSHARE_RATE_LIMIT_BURST must be >= 1")
    if values["redis_url"] and not values["redis_url"].startswith(REDIS_SCHEMES):
        raise InvalidInput(f"FAIRSHARE_REDIS_URL must start with one of {', '.join(REDIS_SCHEMES)}")
    workers = worker_count(values["workers"])
    model_threads(values["model_threads"], workers)  # refuses a bad value now, not at serve
    if not 1 <= values["port"] <= 65535:
        raise InvalidInput("FAIRSHARE_PORT must be within 1..65535")
    return Settings(**values)
