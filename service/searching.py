"""The search use-case: authorised request -> ranked, priced, capped, cited passages, recorded.

The ledger write happens before the response exists for the caller: `HitLedger.record` commits
the query, its hits and the exact response bytes in one transaction, and what it returns is what
the client receives. A retry with the same Idempotency-Key replays those bytes and records nothing.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec

from contracts import (
    Citation,
    Dataset,
    ForbiddenError,
    Hit,
    InvalidInput,
    Owner,
    PaymentRequired,
    ReceiptClaims,
    ReceiptLine,
    SearchRequest,
    SearchResponse,
    SearchResult,
    Timings,
    Withheld,
    split_price,
)
from ledger.catalog import Passage
from ledger.keys import Principal
from ranking.pipeline import Ranked
from ranking.selection import select_within_budget
from service.observability import observe_search
from service.runtime import CatalogSnapshot, Runtime

_encoder = msgspec.json.Encoder()
IDEMPOTENCY_KEY_MAX = 255


@dataclass(frozen=True, slots=True)
class Candidate:
    ranked: Ranked
    passage: Passage
    dataset: Dataset


def request_hash(request: SearchRequest, scope: frozenset[str] | None = None) -> str:
    """Hash of the decoded request, so key order and whitespace in the JSON do not matter.

    A scoped key's dataset scope is part of what it asks: Idempotency-Keys belong to the
    account, and a scoped key must not replay what an unscoped key of the same account bought
    (a 409, like any other reuse of the key for a different request)."""
    digest = hashlib.sha256(_encoder.encode(request))
    if scope is not None:
        digest.update(b"\0scope:" + ",".join(sorted(scope)).encode())
    return digest.hexdigest()


def check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX or not key.isprintable():
        raise InvalidInput("Idempotency-Key must be 1..255 printable characters")
    return key


def check_scope(request: SearchRequest, principal: Principal) -> None:
    """403 when the request names a dataset outside the key's scope."""
    scope = principal.datasets
    if request.datasets is not None and scope is not None:
        outside = sorted(set(request.datasets) - scope)
        if outside:
            raise ForbiddenError(
                f"this key is limited to {', '.join(sorted(scope))}; it may not search "
                f"{', '.join(outside)}",
                datasets=outside,
            )


def searchable_datasets(
    snapshot: CatalogSnapshot,
    request: SearchRequest,
    principal: Principal,
    now: datetime,
    region: str,
) -> tuple[dict[str, int], list[Withheld]]:
    """Dataset id -> generation for the datasets this request may read and be charged for, and
    the named datasets withheld because their licence does not allow this use, customer, time or
    processing in this deployment's `region`, or because they were revoked.

    Licence rules filter rather than fail: content a licence does not allow is never searched,
    so it is neither returned nor charged. Only datasets the request named are reported back.
    """
    scope = principal.datasets
    check_scope(request, principal)
    if request.datasets is not None:
        unknown = sorted(set(request.datasets) - set(snapshot.datasets))
        if unknown:
            raise InvalidInput(f"unknown dataset(s): {', '.join(unknown)}", datasets=unknown)
        wanted = list(dict.fromkeys(request.datasets))
        foreign = [d for d in wanted if snapshot.datasets[d].licence.currency != principal.currency]
        if foreign:
            raise InvalidInput(
                f"dataset(s) {', '.join(foreign)} are priced in another currency than your "
                f"account's {principal.currency}",
                datasets=foreign,
            )
    else:
        # Without an explicit list, search what this account can pay for in its own currency.
        wanted = [
            d.id
            for d in snapshot.datasets.values()
            if d.licence.currency == principal.currency and (scope is None or d.id in scope)
        ]
    allowed: dict[str, int] = {}
    withheld: list[Withheld] = []
    for dataset_id in wanted:
        dataset = snapshot.datasets[dataset_id]
        reason = dataset.licence.refusal(
            use=request.effective_use, territory=principal.territory, at=now, region=region
        )
        if dataset.revoked_at is not None:
            revoked = dataset.revoked_at.isoformat(timespec="seconds")
            reason = f"dataset {dataset_id} was revoked at {revoked}"
        if reason is None:
            if dataset_id in snapshot.generations:
                allowed[dataset_id] = snapshot.generations[dataset_id]
        elif request.datasets is not None:
            withheld.append(Withheld(dataset_id=dataset_id, reason=reason))
    return allowed, withheld


def cap_snippet(passage: Passage, cap: int) -> tuple[str, int, int]:
    """Cut a passage to the licence's snippet cap, at a word boundary when one is near.

    Returns (text, char_start, char_end) with `text == document.text[char_start:char_end]`.
    """
    text = passage.text
    if len(text) > cap:
        cut = text.rfind(" ", 0, cap + 1)
        text = text[: cut if cut >= cap // 2 else cap]
    text = text.rstrip()
    return text, passage.char_start, passage.char_start + len(text)


def cite(
    passage: Passage, dataset: Dataset, owner: Owner, char_start: int, char_end: int
) -> Citation:
    licence = dataset.licence
    return Citation(
        dataset_id=dataset.id,
        owner_id=owner.id,
        owner_name=owner.name,
        document_id=passage.document_id,
        title=passage.title,
        url=passage.url,
        char_start=char_start,
        char_end=char_end,
        licence_id=licence.id,
        attribution=licence.attribution,
    )


def receipt_line(hit: Hit) -> ReceiptLine:
    return ReceiptLine(
        rank=hit.rank,
        chunk_id=hit.chunk_id,
        document_id=hit.document_id,
        dataset_id=hit.dataset_id,
        owner_id=hit.owner_id,
        licence_id=hit.licence_id,
        price_micros=hit.price_micros,
        owner_micros=hit.owner_micros,
        platform_micros=hit.platform_micros,
    )


class PassageLoader:
    """Chunk id -> Passage, read from the catalog only when first needed and then kept for the
    rest of the request (the reranker's head is read once, then reused for the response)."""

    def __init__(self, runtime: Runtime) -> None:
        self._catalog = runtime.catalog
        self.loaded: dict[str, Passage] = {}

    async def load(self, ids: Sequence[str]) -> None:
        missing = [i for i in ids if i not in self.loaded]
        if missing:
            self.loaded.update(await self._catalog.get_passages(missing))

    async def texts(self, ids: Sequence[str]) -> Mapping[str, str]:
        """What the cross-encoder reads: title and chunk text (ids no longer stored left out)."""
        await self.load(ids)
        loaded = self.loaded
        return {i: f"{loaded[i].title}\n{loaded[i].text}" for i in ids if i in loaded}


async def choose(
    ranked: Sequence[Ranked],
    passages: PassageLoader,
    snapshot: CatalogSnapshot,
    generations: Mapping[str, int],
    request: SearchRequest,
) -> tuple[list[Candidate], list[Candidate]]:
    """(what to deliver, every candidate looked at) under `top_k` and the budget.

    Passages are read a page at a time in rank order, starting at `top_k`: a search usually
    delivers its first `top_k` candidates, so reading all ~150 fused ones (most of a request's
    SQL time) would be waste. Selection walks in rank order and stops at `top_k`, so a prefix
    that fills it gives exactly what the whole list would.
    """
    page = request.top_k
    seen = 0
    while True:
        await passages.load([item.chunk_id for item in ranked[seen : seen + page]])
        seen = min(seen + page, len(ranked))
        loaded = passages.loaded
        candidates = [
            Candidate(
                item, loaded[item.chunk_id], snapshot.datasets[loaded[item.chunk_id].dataset_id]
            )
            for item in ranked[:seen]
            if item.chunk_id in loaded and loaded[item.chunk_id].dataset_id in generations
        ]
        chosen = select_within_budget(
            candidates,
            price=lambda c: c.dataset.licence.price_per_hit_micros,
            top_k=request.top_k,
            max_cost_micros=request.max_cost_micros,
        )
        if len(chosen) == request.top_k or seen == len(ranked):
            return chosen, candidates
        page *= 2


async def run_search(
    runtime: Runtime,
    principal: Principal,
    request: SearchRequest,
    idempotency_key: str | None,
) -> bytes:
    """Run, price, record and return one search as the exact JSON bytes the client receives."""
    started = time.perf_counter()
    if not request.query.strip():
        raise InvalidInput("query is blank")
    check_scope(request, principal)  # before any replay: a retry is no way around the scope
    digest = request_hash(request, principal.datasets)
    # The query embedding starts now and runs while the replay check and the catalog read wait
    # on the database.
    async with runtime.pipeline.begin(request.query) as pending:
        if idempotency_key is not None:
            replayed = await runtime.hits.replay(
                customer_id=principal.customer_id,
                idempotency_key=idempotency_key,
                request_hash=digest,
            )
            if replayed is not None:
                return replayed
        snapshot = await runtime.snapshot()
        now = datetime.now(UTC)
        region = runtime.settings.region
        generations, withheld = searchable_datasets(snapshot, request, principal, now, region)
        passages = PassageLoader(runtime)
        wants_rerank = request.rerank if request.rerank is not None else True
        ranking = await pending.rank(
            generations=generations,
            rerank=wants_rerank,
            texts=passages.texts,
            languages=request.languages,
        )
    chosen, candidates = await choose(ranking.items, passages, snapshot, generations, request)
    if candidates and not chosen:
        # Results exist but the budget buys none of them: say so rather than answer "nothing".
        cheapest = min(c.dataset.licence.price_per_hit_micros for c in candidates)
        raise PaymentRequired(
            f"max_cost_micros {request.max_cost_micros} is below the price of any result "
            f"(the cheapest costs {cheapest} micros); nothing was charged",
            required_micros=cheapest,
            max_cost_micros=request.max_cost_micros,
        )

    query_id = uuid.uuid4().hex
    results: list[SearchResult] = []
    hits: list[Hit] = []
    for rank, candidate in enumerate(chosen, start=1):
        licence = candidate.dataset.licence
        owner = snapshot.owners[candidate.dataset.owner_id]
        text, start, end = cap_snippet(candidate.passage, licence.snippet_cap_chars)
        owner_micros, platform_micros = split_price(
            licence.price_per_hit_micros, licence.owner_share_bps
        )
        results.append(
            SearchResult(
                chunk_id=candidate.passage.chunk_id,
                text=text,
                score=round(candidate.ranked.score, 6),
                price_micros=licence.price_per_hit_micros,
                citation=cite(candidate.passage, candidate.dataset, owner, start, end),
            )
        )
        hits.append(
            Hit(
                query_id=query_id,
                customer_id=principal.customer_id,
                chunk_id=candidate.passage.chunk_id,
                document_id=candidate.passage.document_id,
                dataset_id=candidate.dataset.id,
                owner_id=owner.id,
                licence_id=licence.id,
                rank=rank,
                price_micros=licence.price_per_hit_micros,
                owner_micros=owner_micros,
                platform_micros=platform_micros,
                currency=licence.currency,
                created_at=now,
                region=region,
                territory=principal.territory,
            )
        )
    cost = sum(h.price_micros for h in hits)
    receipt = runtime.receipts.sign(
        ReceiptClaims(
            query_id=query_id,
            customer_id=principal.customer_id,
            issued_at=now,
            currency=principal.currency,
            cost_micros=cost,
            hits=[receipt_line(h) for h in hits],
            intended_use=request.effective_use,
        )
    )
    response = SearchResponse(
        query_id=query_id,
        results=results,
        cost_micros=cost,
        currency=principal.currency,
        reranked=ranking.reranked,
        timings_ms=Timings(
            embed=round(ranking.embed_ms, 3),
            retrieve=round(ranking.retrieve_ms, 3),
            rerank=round(ranking.rerank_ms, 3),
            total=round((time.perf_counter() - started) * 1000, 3),
        ),
        receipt=receipt,
        intended_use=request.effective_use,
        withheld=withheld,
        query_language=ranking.query_language,
    )
    body = _encoder.encode(response)
    recorded = await runtime.hits.record(
        query_id=query_id,
        customer_id=principal.customer_id,
        idempotency_key=idempotency_key,
        request_hash=digest,
        response=body,
        cost_micros=cost,
        currency=principal.currency,
        hits=hits,
    )
    if recorded is body:  # ours, not a concurrent twin's that won the idempotency key
        observe_search(
            msgspec.structs.asdict(response.timings_ms),
            hits,
            min(len(ranking.items), runtime.settings.rerank_depth) if ranking.reranked else 0,
        )
    return recorded
