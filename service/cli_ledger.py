"""`fairshare ledger|periods|payouts|statements`: the money commands.

They open only the database (no models, no indexes), so they start in well under a second.
Exit status: 0 when all is well, 1 when the command ran and found a problem (a broken chain,
a failed or unfinished payout, a reconciliation mismatch), 2 for bad input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import msgspec

from contracts import InvalidInput
from contracts.ledger import REVERSAL_REASONS
from ledger.customers import CustomerAccounts
from ledger.periods import close_period, closed_periods
from ledger.reversals import reverse_query
from ledger.statement_formats import format_units, statement_csv, statement_html, statement_pdf
from ledger.statements import build_statement
from ledger.verify import verify
from service.runtime import open_ledger, payouts_for
from service.settings import Settings

Command = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]


def _print_json(value: Any) -> None:
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(value)).decode() + "\n")


async def cmd_ledger(args: argparse.Namespace, settings: Settings) -> int:
    async with open_ledger(settings) as engine:
        if args.action == "reverse":
            _print_json(
                await reverse_query(engine, args.query_id, reason=args.reason, rank=args.rank)
            )
            return 0
        report = await verify(engine)
    if args.action == "balances":
        for b in report.balances:
            print(
                f"{b.account_id:<48} {b.currency} {format_units(b.balance_micros, b.currency):>18}"
            )
        return 0
    print(
        f"checked {report.entries} transactions; chain head seq {report.head_seq} "
        f"hash {report.head_hash}"
    )
    if report.ok:
        print("ledger OK: chain intact, every transaction balanced, balances sum to zero")
        return 0
    if report.first_broken_seq is not None:
        print(f"FIRST BROKEN LINK: seq {report.first_broken_seq}")
    for problem in report.problems:
        print(f"problem: {problem}")
    return 1


async def cmd_customers(args: argparse.Namespace, settings: Settings) -> int:
    async with open_ledger(settings) as engine:
        accounts = CustomerAccounts(engine)
        if args.action == "topup":
            _print_json(
                await accounts.topup(
                    args.customer, amount_micros=args.amount_micros, reference=args.reference
                )
            )
        elif args.action == "credit-limit":
            limit = None if args.micros == "none" else _micros(args.micros)
            _print_json(await accounts.set_credit_limit(args.customer, limit))
        elif args.action == "territory":
            code = None if args.code == "none" else args.code
            territory = await accounts.set_territory(args.customer, code)
            _print_json({"customer": args.customer, "territory": territory})
        else:
            _print_json(await accounts.balance(args.customer))
    return 0


def _micros(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidInput(
            f"expected an integer number of micros or 'none', got {text!r}"
        ) from None


async def cmd_periods(args: argparse.Namespace, settings: Settings) -> int:
    async with open_ledger(settings) as engine:
        if args.action == "close":
            closed_now = await close_period(engine, args.period)
            print(f"{args.period} {'closed' if closed_now else 'was already closed'}")
            return 0
        for period, closed_at in await closed_periods(engine):
            print(f"{period} closed at {closed_at.isoformat()}")
    return 0


async def cmd_payouts(args: argparse.Namespace, settings: Settings) -> int:
    def step(payout_id: str, state: str) -> None:
        print(f"  {payout_id}: {state}", file=sys.stderr)

    async with open_ledger(settings) as engine:
        payouts = payouts_for(engine, settings, on_step=step)
        if args.action == "list":
            _print_json(await payouts.list_payouts(period=args.period, owner_id=args.owner))
            return 0
        if args.action == "reconcile":
            mismatches = await payouts.reconcile(args.period)
            for m in mismatches:
                print(f"MISMATCH payout={m.payout_id} transfer={m.transfer_id}: {m.problem}")
            print(f"{len(mismatches)} mismatch(es)")
            return 1 if mismatches else 0
        outcomes = (
            await payouts.run(args.period)
            if args.action == "run"
            else [await payouts.retry(args.payout_id)]
        )
    unfinished = 0
    for o in outcomes:
        state = o.payout.state if o.payout is not None else "none"
        print(f"{o.owner_id}: {state} — {o.note}")
        unfinished += state in ("pending", "submitted", "failed")
    return 1 if unfinished else 0


async def cmd_statements(args: argparse.Namespace, settings: Settings) -> int:
    async with open_ledger(settings) as engine:
        statement = await build_statement(engine, owner_id=args.owner, period=args.period)
    if args.format == "pdf":
        if not args.output:
            raise InvalidInput("--format pdf needs --output FILE")
        Path(args.output).write_bytes(statement_pdf(statement))
        print(f"wrote {args.output}", file=sys.stderr)
        return 0
    if args.format == "csv":
        text = statement_csv(statement)
    elif args.format == "html":
        text = statement_html(statement)
    else:
        text = msgspec.json.format(msgspec.json.encode(statement)).decode() + "\n"
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("ledger", help="verify the ledger, show balances, reverse hits")
    actions = p.add_subparsers(dest="action", required=True)
    actions.add_parser("verify", help="recompute the hash chain and balances")
    actions.add_parser("balances", help="every account's balance, from its postings")
    a = actions.add_parser("reverse", help="reverse a query's hits (refund) with a reason code")
    a.add_argument("query_id")
    a.add_argument("--reason", required=True, choices=REVERSAL_REASONS)
    a.add_argument("--rank", type=int, help="only the hit at this rank")

    p = sub.add_parser("customers", help="prepaid balances and credit limits")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("topup", help="credit a prepaid top-up (once per --reference)")
    a.add_argument("customer", help="customer id or name")
    a.add_argument("--amount-micros", type=int, required=True)
    a.add_argument("--reference", required=True, help="the payment's id: its idempotency key")
    a = actions.add_parser("credit-limit", help="how far below zero a balance may go")
    a.add_argument("customer", help="customer id or name")
    a.add_argument("micros", help="micros, 0 for strictly prepaid, or none for no limit")
    a = actions.add_parser("territory", help="the jurisdiction a customer is served in")
    a.add_argument("customer", help="customer id or name")
    a.add_argument("code", help="ISO 3166-1 alpha-2 (SG, DE, ...), or none for unknown")
    a = actions.add_parser("balance", help="balance, limit and what is available")
    a.add_argument("customer", help="customer id or name")

    p = sub.add_parser("periods", help="accounting months")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("close", help="close a month: later hits go to the next one")
    a.add_argument("period", help="YYYY-MM")
    actions.add_parser("list", help="closed periods")

    p = sub.add_parser("payouts", help="pay owners through Stripe Connect")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("run", help="pay every owner for a closed period (resumable)")
    a.add_argument("--period", required=True, help="YYYY-MM")
    a = actions.add_parser("retry", help="retry a failed payout as a new attempt")
    a.add_argument("payout_id")
    a = actions.add_parser("list", help="payouts and their states")
    a.add_argument("--period")
    a.add_argument("--owner")
    a = actions.add_parser("reconcile", help="compare payouts with Stripe's transfers")
    a.add_argument("--period")

    p = sub.add_parser("statements", help="an owner's statement for a month")
    p.add_argument("--owner", required=True)
    p.add_argument("--period", required=True, help="YYYY-MM (UTC)")
    p.add_argument("--format", choices=["json", "csv", "html", "pdf"], default="json")
    p.add_argument("--output", help="write to this file (required for pdf)")


COMMANDS: dict[str, Command] = {
    "customers": cmd_customers,
    "ledger": cmd_ledger,
    "periods": cmd_periods,
    "payouts": cmd_payouts,
    "statements": cmd_statements,
}
