"""The `fairshare` command line. Every command runs the same code as the HTTP API, in-process."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from contracts import FairshareError, InvalidInput, Owner, SearchRequest
from contracts.catalog import USES
from ledger.rsl import ImportTerms, licence_from_rsl, licence_to_rsl
from service import cli_ledger, cli_residency
from service.demo import DEMO_DIR, demo_keys, load_demo_catalog, read_catalog, read_licence
from service.revocation import revoke_everywhere
from service.runtime import Runtime, freeze_loaded_heap, open_runtime, prepare_ledger
from service.searching import run_search
from service.settings import Settings, load_settings

Command = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]


def _print_json(value: Any) -> None:
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(value)).decode() + "\n")


async def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    async with open_runtime(settings, with_qdrant=True, with_reranker=False) as runtime:
        freeze_loaded_heap()
        report = await runtime.ingest(
            Path(args.path),
            args.dataset,
            sync=args.sync,
            strict=args.strict,
            progress=not args.no_progress,
        )
    for error in report.errors:
        print(f"bad record: {error}", file=sys.stderr)
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    print(report.summary())
    return 1 if report.errors else 0


async def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    api_key = args.api_key or os.environ.get("FAIRSHARE_API_KEY")
    if not api_key:
        raise InvalidInput("searching is charged: pass --api-key or set FAIRSHARE_API_KEY")
    request = msgspec.convert(
        {
            "query": args.query,
            "top_k": args.top_k,
            "datasets": args.dataset or None,
            "max_cost_micros": args.max_cost_micros,
            "rerank": False if args.no_rerank else None,
            "intended_use": args.intended_use,
            "languages": args.language or None,
        },
        SearchRequest,
    )
    async with open_runtime(settings) as runtime:
        principal = await runtime.keys.authenticate(api_key)
        body = await run_search(runtime, principal, request, args.idempotency_key)
    sys.stdout.write(msgspec.json.format(body).decode() + "\n")
    return 0


async def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "revoke":
        async with open_runtime(settings, with_reranker=False) as runtime:
            await runtime.keys.revoke(args.key_id)
        print(f"revoked {args.key_id}")
        return 0
    async with open_runtime(settings, with_reranker=False) as runtime:
        principal, plaintext = await runtime.keys.create_key(
            customer=args.customer,
            role=args.role,
            owner_id=args.owner,
            currency=args.currency,
            datasets=args.dataset or None,
        )
    _print_json(
        {
            "key_id": principal.key_id,
            "customer_id": principal.customer_id,
            "role": principal.role,
            "owner_id": principal.owner_id,
            "api_key": plaintext,
            "datasets": None if principal.datasets is None else sorted(principal.datasets),
        }
    )
    print("store this key now: only its hash is kept", file=sys.stderr)
    return 0


async def cmd_owners(args: argparse.Namespace, settings: Settings) -> int:
    async with open_runtime(settings, with_reranker=False) as runtime:
        if args.action == "add":
            owner = Owner(
                id=args.id,
                name=args.name,
                email=args.email,
                currency=args.currency,
                stripe_account=args.stripe_account,
            )
            _print_json(await runtime.catalog.add_owner(owner))
        elif args.action == "payout-account":
            account = None if args.account == "none" else args.account
            _print_json(await runtime.catalog.set_payout_account(args.id, account))
        else:
            _print_json(await runtime.catalog.list_owners())
    return 0


async def cmd_datasets(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "revoke":
        if not (args.yes or _revocation_confirmed(args.id)):
            print(f"nothing revoked: {args.id} is unchanged", file=sys.stderr)
            return 1
        return await _revoke_command(args.id, settings)
    async with open_runtime(settings, with_reranker=False) as runtime:
        if args.action == "add":
            dataset = await runtime.catalog.add_dataset(
                dataset_id=args.id,
                owner_id=args.owner,
                name=args.name or args.id,
                description=args.description,
                licence=read_licence(Path(args.licence)),
            )
            _print_json(dataset)
        elif args.action == "licence":
            await _licence_command(args, runtime)
        else:
            _print_json(await runtime.catalog.list_datasets())
    return 0


def _revocation_confirmed(dataset_id: str) -> bool:
    """Revocation deletes a dataset's content in every region and cannot be undone, so on a
    terminal the operator types the dataset id back; a script (stdin not a terminal) must say
    --yes, rather than be answered by whatever its stdin holds."""
    if not sys.stdin.isatty():
        raise InvalidInput(
            f"revoking {dataset_id!r} deletes its content in every region and cannot be undone: "
            "pass --yes to confirm (stdin is not a terminal, so there is no one to ask)"
        )
    print(
        f"This deletes every chunk of {dataset_id} in every region, for good.\n"
        "Type the dataset id to revoke it: ",
        end="",
        file=sys.stderr,  # stdout is the receipt's
        flush=True,
    )
    return sys.stdin.readline().strip() == dataset_id


async def _revoke_command(dataset_id: str, settings: Settings) -> int:
    """`datasets revoke`: every region's partition, one receipt (printed, and kept in each)."""
    receipt, new = await revoke_everywhere(settings, dataset_id)
    _print_json(receipt)
    regions = ", ".join(r.region for r in receipt.claims.regions)
    done = "revoked" if new else "was already revoked, by receipt"
    print(f"{dataset_id} {done} {receipt.revocation_id} in region(s) {regions}", file=sys.stderr)
    return 0


async def _licence_command(args: argparse.Namespace, runtime: Runtime) -> None:
    """`datasets licence export|import`: the dataset's terms as an RSL 1.0 document, both ways."""
    dataset = await runtime.catalog.get_dataset(args.dataset)
    if args.licence_action == "export":
        document = licence_to_rsl(dataset.licence, content_url=args.content_url)
        if args.output:
            Path(args.output).write_bytes(document)
        else:
            sys.stdout.write(document.decode())
        return
    try:
        document = Path(args.file).read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {args.file}: {exc.strerror}") from None
    licence = licence_from_rsl(
        document,
        currency=dataset.licence.currency,
        terms=ImportTerms(
            licence_id=args.licence_id,
            name=args.name,
            owner_share_bps=args.owner_share_bps,
            snippet_cap_chars=args.snippet_cap_chars,
            attribution=args.attribution,
        ),
    )
    _print_json(await runtime.catalog.set_licence(args.dataset, licence))


async def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    async with open_runtime(settings, with_qdrant=True, with_reranker=False) as runtime:
        for report in await load_demo_catalog(runtime, Path(args.catalog)):
            print(report.summary())
        # The owner of the first demo dataset: the one the printed search query reaches.
        first_owner = read_catalog(Path(args.catalog))["datasets"][0]["owner"]
        keys = await demo_keys(runtime, first_owner)
    base = f"http://{settings.host}:{settings.port}"
    period = datetime.now(UTC).strftime("%Y-%m")
    print(
        "\nSearch the demo catalog (each result is a recorded, paid hit):\n"
        f"  curl -s {base}/v1/search -H 'Authorization: Bearer {keys.agent}' "
        "-H 'Content-Type: application/json' "
        '-d \'{"query": "antibiotics for community-acquired pneumonia", "top_k": 3}\'\n'
        f"\nThen read what {keys.owner_id} earned this month:\n"
        f"  curl -s '{base}/v1/owners/{keys.owner_id}/statement?period={period}' "
        f"-H 'Authorization: Bearer {keys.owner}'\n"
        f"\nAdmin key (catalog and keys routes): {keys.admin}\n",
        flush=True,
    )
    return 0


async def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    from service.evaluate import (
        EvalOptions,
        evaluate_collection,
        format_table,
        parse_stages,
        report_json,
    )

    options = EvalOptions(
        data=Path(args.data),
        split=args.split,
        backend=args.backend,
        stages=parse_stages(args.stages),
        keep_data=Path(args.keep_data) if args.keep_data else None,
        progress=not args.no_progress,
        queries=Path(args.queries) if args.queries else None,
    )
    evaluation = await evaluate_collection(settings, options)
    print(format_table(evaluation.report))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(report_json(evaluation.report))
        print(f"report written to {out}", file=sys.stderr)
    return 0


def serve(settings: Settings) -> None:
    """Serve the API: in this process, or in FAIRSHARE_WORKERS processes sharing one socket."""
    import uvicorn

    from service.app import create_app
    from service.observability import configure_logging, share_metrics_across_workers
    from service.workers import serve_workers

    workers = settings.worker_count
    if workers > 1 and settings.vector_backend == "qdrant" and not settings.qdrant_url:
        raise InvalidInput(
            "FAIRSHARE_WORKERS > 1 cannot share Qdrant local mode (one process at a time): "
            "serve with FAIRSHARE_VECTOR_BACKEND=faiss, or run a Qdrant server and set "
            "FAIRSHARE_QDRANT_URL"
        )
    configure_logging()
    # Our middleware writes one JSON line per request (with its query_id): no uvicorn access log.
    options: dict[str, Any] = {
        "log_level": "info",
        "access_log": False,
        "timeout_graceful_shutdown": 30,
    }
    if workers == 1:
        from service.runtime import size_model_threads

        size_model_threads(settings.model_thread_count)
        uvicorn.run(create_app(settings), host=settings.host, port=settings.port, **options)
        return
    # Workers are fresh processes that build their app from the environment: migrate and make
    # the receipt key here first, so that they do not race to.
    asyncio.run(prepare_ledger(settings))
    with share_metrics_across_workers():
        status = serve_workers(workers, settings.host, settings.port, options)
    if status:
        raise SystemExit(status)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fairshare",
        description="Paid retrieval that pays the owners of the content it serves.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="serve the HTTP API")
    p.add_argument("--host")
    p.add_argument("--port", type=int)

    p = sub.add_parser("mcp", help="serve the MCP tools to agents (stdio, or streamable HTTP)")
    p.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    p.add_argument("--host")
    p.add_argument("--port", type=int, help="HTTP port; default FAIRSHARE_PORT + 1")

    p = sub.add_parser("ingest", help="ingest a JSONL/CSV file or a folder of .md/.txt files")
    p.add_argument("path")
    p.add_argument("--dataset", required=True)
    p.add_argument("--sync", action="store_true", help="remove documents no longer in the source")
    p.add_argument("--strict", action="store_true", help="write nothing if any record is bad")
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("search", help="search in-process (charged to the key's customer)")
    p.add_argument("query")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--dataset", action="append", help="restrict to a dataset (repeatable)")
    p.add_argument("--max-cost-micros", type=int)
    p.add_argument("--no-rerank", action="store_true")
    p.add_argument("--intended-use", choices=USES, help="only licences permitting it (default rag)")
    p.add_argument(
        "--language",
        action="append",
        help='only passages in this language: ISO 639-1, or "und" (repeatable)',
    )
    p.add_argument("--api-key", help="defaults to $FAIRSHARE_API_KEY")
    p.add_argument("--idempotency-key")

    p = sub.add_parser("keys", help="API keys")
    keys = p.add_subparsers(dest="action", required=True)
    k = keys.add_parser("create", help="create a key (printed once)")
    k.add_argument("--customer", required=True)
    k.add_argument("--role", required=True, choices=["agent", "owner", "admin"])
    k.add_argument("--owner", help="the owner id an owner key belongs to")
    k.add_argument("--currency", default="USD")
    k.add_argument("--dataset", action="append", help="limit the key to this dataset (repeatable)")
    k = keys.add_parser("revoke", help="revoke a key by its key_id")
    k.add_argument("key_id")

    p = sub.add_parser("owners", help="content owners")
    owners = p.add_subparsers(dest="action", required=True)
    o = owners.add_parser("add")
    o.add_argument("--id", required=True)
    o.add_argument("--name", required=True)
    o.add_argument("--email", default="")
    o.add_argument("--currency", default="USD")
    o.add_argument("--stripe-account", help="Stripe Connect account (acct_...) paid out to")
    o = owners.add_parser("payout-account", help="set the Stripe account payouts go to")
    o.add_argument("id")
    o.add_argument("account", help="acct_..., or none to hold payouts")
    owners.add_parser("list")

    p = sub.add_parser("datasets", help="licensed datasets")
    datasets = p.add_subparsers(dest="action", required=True)
    d = datasets.add_parser("add")
    d.add_argument("--id", required=True)
    d.add_argument("--owner", required=True)
    d.add_argument("--licence", required=True, help="licence terms, a TOML or JSON file")
    d.add_argument("--name")
    d.add_argument("--description", default="")
    datasets.add_parser("list")
    d = datasets.add_parser(
        "revoke",
        help="delete a dataset's content from every region, index and cache; print the signed "
        "receipt (irreversible; asks for the dataset id unless --yes)",
    )
    d.add_argument("id")
    d.add_argument("--yes", action="store_true", help="revoke without asking")
    d = datasets.add_parser("licence", help="a dataset's licence as RSL 1.0 XML (export|import)")
    licence = d.add_subparsers(dest="licence_action", required=True)
    e = licence.add_parser("export", help="print or write the dataset's licence as RSL 1.0")
    e.add_argument("dataset")
    e.add_argument("--output", help="write here instead of stdout")
    e.add_argument("--content-url", default="/", help="the <content url> the licence covers")
    i = licence.add_parser("import", help="serve the dataset under an RSL 1.0 document's terms")
    i.add_argument("dataset")
    i.add_argument("file", help="the RSL XML file")
    i.add_argument("--licence-id", help="id of the new licence (if the file does not say)")
    i.add_argument("--name")
    i.add_argument("--owner-share-bps", type=int)
    i.add_argument("--snippet-cap-chars", type=int)
    i.add_argument("--attribution")

    p = sub.add_parser("eval", help="score the search stages on a BEIR-format collection")
    p.add_argument("--data", required=True, help="folder with corpus.jsonl, queries.jsonl, qrels/")
    p.add_argument("--split", default="test", help="qrels/<split>.tsv to score against")
    p.add_argument("--backend", choices=["faiss", "qdrant"], default="faiss")
    p.add_argument("--stages", default="bm25,dense,hybrid,rerank")
    p.add_argument("--out", help="write the JSON report here")
    p.add_argument("--keep-data", help="ingest into this data dir and keep it (default: temp)")
    p.add_argument(
        "--queries",
        help="score the query texts of this queries.jsonl (same ids as the qrels) instead of "
        "the collection's own: another language's questions, for a cross-lingual figure",
    )
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("demo", help="load the demo catalog and print demo keys and curl lines")
    p.add_argument("--catalog", default=str(DEMO_DIR))
    p.add_argument("--serve", action="store_true", help="then serve the API")

    cli_ledger.add_parsers(sub)
    cli_residency.add_parsers(sub)
    return parser


COMMANDS: dict[str, Command] = {
    "ingest": cmd_ingest,
    "search": cmd_search,
    "keys": cmd_keys,
    "owners": cmd_owners,
    "datasets": cmd_datasets,
    "eval": cmd_eval,
    "demo": cmd_demo,
    **cli_ledger.COMMANDS,
    **cli_residency.COMMANDS,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        if args.command == "serve":
            settings = settings.with_(
                host=args.host or settings.host, port=args.port or settings.port
            )
            serve(settings)
            return 0
        if args.command == "mcp":
            from service.mcp_server import run_mcp  # the MCP SDK loads only for this command

            run_mcp(
                settings,
                transport=args.transport,
                host=args.host or settings.host,
                port=args.port or settings.port + 1,
            )
            return 0
        status: int = asyncio.run(COMMANDS[args.command](args, settings))
        if args.command == "demo" and args.serve and status == 0:
            serve(settings)
        return status
    except FairshareError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 2
    except msgspec.ValidationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
