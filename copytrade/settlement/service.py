"""The settlement service: pay profit shares and rebates per copy, once per cycle, after validation.

A run settles one weekly cycle or one or more event cycles (R-SET-4/5):

1. open the cycle rows (a completed cycle pays nothing again, R-SET-9);
2. ask the gate (the ``ledger_integrity`` checkpoint); a failure blocks every payout of the run's
   cycles and is recorded with the reason (R-LED-7);
3. settle the copies in batches of a few thousand: read their facts in a few set-based queries,
   decide each copy (``decide``), post all transfers of the batch in bulk, write the payout rows
   and each copy's carried state, and commit — all of a batch or none of it;
4. mark the cycles completed with a summary.

A crash between batches leaves committed batches paid and their payout rows written; the rerun
skips every copy that already has a payout row in the cycle and carries on (R-SET-9). Every
transfer's idempotency key is derived from (cycle key, copy, kind[, asset]), so even a payout row
lost with its batch could never pay twice: the ledger would answer "already posted".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import bindparam, case, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from copytrade import clock
from copytrade.domain.errors import RuleViolation
from copytrade.domain.money import ZERO, from_units
from copytrade.gcpause import paused_gc
from copytrade.ledger import Ledger, Leg, TransferSpec
from copytrade.ledger.accounts import follower_cash, leader_capital, leader_rebates, person_spot
from copytrade.ledger.rawsql import Raw, units
from copytrade.settlement.cycles import (
    FINAL_TRIGGERS,
    CycleSpec,
    event_cycle,
    trigger_for_stop_reason,
    weekly_cycle,
)
from copytrade.settlement.decide import (
    R_SET_6_THRESHOLD,
    ShareDecision,
    cash_to_release,
    decide_share,
    portfolio_deferral,
    rebates_to_pay,
)
from copytrade.settlement.gate import Gate
from copytrade.settlement.marks import (
    NO_MARKS,
    LeaderFillsUnrealised,
    MarkPrices,
    PortfolioUnrealised,
)
from copytrade.settlement.reading import (
    MarkCache,
    StateRow,
    load_batch,
    settled_in,
    weekly_candidates,
)
from copytrade.settlement.report import PayoutLine, RunReport
from copytrade.settlement.sqlutil import chunks, raw_units
from models.ledger import LedgerAccount
from models.platform import AuditEntry, Copy, LeadPortfolio
from models.settlement import CopySettlementState, SettlementCycle, SettlementPayout
from models.trading import CopyStopEvent, LeaderFill

SHARE_CODE, REBATE_CODE = "profit_share", "rebate_payout"
RELEASE_CODE, CAPITAL_CODE = "copy_release", "capital_release"


class SettlementBlocked(RuntimeError):
    """Validation failed: nothing of the run's cycles was paid (R-LED-7)."""

    def __init__(self, report: RunReport) -> None:
        self.report = report
        super().__init__(report.blocked_reason or "settlement blocked by ledger validation")


@dataclass(frozen=True, slots=True)
class BatchEvent:
    """Progress of a run: ``posted`` (inside the batch's transaction) then ``committed``."""

    stage: str
    index: int
    copies: int
    done: int
    total: int


def share_key(cycle_key: str, copy_id: int) -> str:
    """Return the idempotency key of a copy's profit-share transfer in a cycle."""
    return f"settle:{cycle_key}:{copy_id}:share"


def rebate_key(cycle_key: str, copy_id: int, asset: str) -> str:
    """Return the idempotency key of a copy's rebate payout in a cycle."""
    return f"settle:{cycle_key}:{copy_id}:rebate:{asset}"


def release_key(cycle_key: str, copy_id: int, asset: str) -> str:
    """Return the idempotency key of a stopped copy's cash going back to its follower."""
    return f"settle:{cycle_key}:{copy_id}:release:{asset}"


class SettlementService:
    """Settle copies against the ledger; see the module docstring for the steps."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        gate: Gate | None,
        marks: MarkPrices = NO_MARKS,
        portfolio_unrealised: PortfolioUnrealised | None = None,
        batch_size: int = 10_000,
        deferral_threshold: Decimal = R_SET_6_THRESHOLD,
        on_batch: Callable[[BatchEvent], None] | None = None,
    ) -> None:
        if batch_size < 1:
            raise RuleViolation(
                "batch_size", batch_size, "R-SET-9", "a batch holds at least one copy"
            )
        self.sessions = sessions
        self.gate = gate
        self.marks = marks
        self.portfolio_unrealised = portfolio_unrealised or LeaderFillsUnrealised(marks)
        self.batch_size = batch_size
        self.deferral_threshold = deferral_threshold
        self.on_batch = on_batch

    # -- entry points --------------------------------------------------------------------------

    def settle_weekly(self, at: datetime | None = None) -> RunReport:
        """Settle the weekly cycle of the week containing ``at`` (default: now) (R-SET-4)."""
        spec = weekly_cycle(at or clock.now())
        return self._run([spec], spec.trigger, spec.as_of)

    def settle_copy(
        self, copy_id: int, trigger: str, *, ref: str | None = None, at: datetime | None = None
    ) -> RunReport:
        """Settle one copy for an event trigger (R-SET-5): a stop, a close, a profit withdrawal."""
        spec = event_cycle(copy_id, trigger, at or clock.now(), ref)
        with self.sessions() as session:
            copy = session.get(Copy, copy_id)
            if copy is None:
                raise RuleViolation("copy", copy_id, "R-SET-1", f"there is no copy {copy_id}")
            if trigger in FINAL_TRIGGERS and copy.status != "stopped":
                raise RuleViolation(
                    "trigger",
                    trigger,
                    "R-SET-5",
                    f"copy {copy_id} is still {copy.status}; stop it before its final settlement",
                )
        return self._run([spec], trigger, spec.as_of)

    def settle_event(
        self,
        copy_id: int,
        trigger: str | None = None,
        *,
        ref: str | None = None,
        at: datetime | None = None,
    ) -> RunReport:
        """Settle one copy for an event, idempotently: the entry point of event automations.

        Without ``trigger`` the copy must be stopped and its own stop reason names the trigger
        (``copytrade.domain.triggers.trigger_of``). The cycle is keyed by trigger and copy (and a
        withdrawal's reference), so delivering the same event again pays nothing twice (R-SET-9):
        the run reports ``already_completed``.
        """
        if trigger is None:
            with self.sessions() as session:
                copy = session.get(Copy, copy_id)
                if copy is None:
                    raise RuleViolation("copy", copy_id, "R-SET-1", f"there is no copy {copy_id}")
                if copy.status != "stopped":
                    raise RuleViolation(
                        "trigger",
                        None,
                        "R-SET-5",
                        f"copy {copy_id} is still {copy.status}; name the trigger of a live copy",
                    )
                trigger = trigger_for_stop_reason(copy.stop_reason)
        return self.settle_copy(copy_id, trigger, ref=ref, at=at)

    def settle_pending_events(self, at: datetime | None = None) -> RunReport:
        """Settle every stopped copy whose final settlement has not run yet (R-SET-5, R-LEAD-10)."""
        at = at or clock.now()
        state = CopySettlementState
        with self.sessions() as session:
            rows = session.execute(
                select(Copy.id, Copy.stop_reason)
                .join(LeadPortfolio, LeadPortfolio.id == Copy.portfolio_id)
                .outerjoin(
                    state,
                    (state.copy_id == Copy.id) & (state.asset == LeadPortfolio.capital_asset),
                )
                .where(Copy.status == "stopped", state.final_cycle_id.is_(None))
                .order_by(Copy.id)
            ).all()
        specs = [event_cycle(cid, trigger_for_stop_reason(reason), at) for cid, reason in rows]
        return self._run(specs, "pending_events", at)

    # -- the run -------------------------------------------------------------------------------

    def _run(self, specs: Sequence[CycleSpec], trigger: str, as_of: datetime) -> RunReport:
        report = RunReport(trigger=trigger, as_of=as_of, cycle_keys=[s.key for s in specs])
        cycles: dict[str, tuple[int, str]] = {}
        if specs:
            with self.sessions() as session, session.begin():
                cycles = _open_cycles(session, specs)
        open_specs = [s for s in specs if cycles[s.key][1] != "completed"]
        open_ids = [cycles[s.key][0] for s in open_specs]
        release = False
        if trigger in ("weekly", "pending_events"):
            with self.sessions() as session:
                release = _capital_pending(session)
        if not open_specs and not release:
            report.status = "already_completed" if specs else "nothing_to_do"
            return report

        if self.gate is not None:
            result = self.gate()
            report.validation = result.report
            with self.sessions() as session, session.begin():
                _record_gate(session, open_ids, open_specs, result.passed, result.reason)
            if not result.passed:
                report.status = "blocked"
                report.blocked_reason = result.reason
                raise SettlementBlocked(report)
        if not open_specs:
            with self.sessions() as session, session.begin():
                _release_capital(session, report)
            return report

        # Work: (copy, cycle) pairs not settled yet in their cycle.
        with self.sessions() as session:
            if open_specs[0].kind == "weekly":
                spec = open_specs[0]
                items = [(cid, spec) for cid in weekly_candidates(session, open_ids[0], spec.as_of)]
                deferrals = self._deferrals(session, spec.as_of)
            else:
                done = settled_in(session, open_ids)
                items = sorted((s.copy_id, s) for s in open_specs if s.copy_id not in done)
                deferrals = {}
        marks = MarkCache(self.marks)
        total = len(items)
        for index, start in enumerate(range(0, total, self.batch_size)):
            chunk = items[start : start + self.batch_size]
            with paused_gc(), self.sessions() as session, session.begin():
                _roomy_cache(session)
                self._settle_batch(session, chunk, cycles, as_of, marks, deferrals, report)
                self._emit("posted", index, len(chunk), start + len(chunk), total)
            report.batches += 1
            self._emit("committed", index, len(chunk), start + len(chunk), total)

        if release:
            with self.sessions() as session, session.begin():
                _release_capital(session, report)
        with self.sessions() as session, session.begin():
            totals = _cycle_totals(session, open_ids)
            finished = clock.now()
            cycles_table = SettlementCycle.__table__
            session.execute(
                update(cycles_table)
                .where(cycles_table.c.id == bindparam("cid"))
                .values(status="completed", finished_at=finished, summary=bindparam("summary")),
                [
                    {"cid": cid, "summary": {"cycle": totals.get(cid, {}), "run": report.summary()}}
                    for cid in open_ids
                ],
                execution_options={"synchronize_session": False},
            )
        return report

    def _deferrals(self, session: Session, as_of: datetime) -> dict[int, str]:
        """Return the futures portfolios whose weekly shares wait, with the reason (R-SET-6)."""
        futures = list(
            session.scalars(select(LeadPortfolio.id).where(LeadPortfolio.mode == "futures"))
        )
        values = self.portfolio_unrealised.unrealised(session, futures, as_of)
        out = {}
        for pid in futures:
            reason = portfolio_deferral("futures", values.get(pid), self.deferral_threshold)
            if reason:
                out[pid] = reason
        return out

    def _settle_batch(
        self,
        session: Session,
        items: Sequence[tuple[int, CycleSpec]],
        cycles: dict[str, tuple[int, str]],
        as_of: datetime,
        marks: MarkCache,
        deferrals: dict[int, str],
        report: RunReport,
    ) -> None:
        batch = load_batch(session, [cid for cid, _ in items], as_of, marks)
        specs: list[TransferSpec] = []
        payouts: list[dict] = []
        pending: list[tuple[dict, int]] = []  # (payout row, index of its transfer in specs)
        states: dict[tuple[int, str], dict] = {}
        now = clock.now()
        for copy_id, spec in items:
            facts = batch.facts.get(copy_id)
            if facts is None:  # the copy vanished (cannot happen: copies are never deleted)
                continue
            cycle_id = cycles[spec.key][0]
            share = decide_share(
                facts, deferrals.get(facts.portfolio_id) if spec.kind == "weekly" else None
            )
            rebates = rebates_to_pay(facts)
            refs = {"copy_id": copy_id, "portfolio_id": facts.portfolio_id, "cycle": spec.key}
            leader_spot = person_spot(facts.leader_person_id)
            share_row = {
                "cycle_id": cycle_id,
                "copy_id": copy_id,
                "portfolio_id": facts.portfolio_id,
                "kind": "profit_share",
                "asset": facts.asset,
                "status": share.status,
                "amount": share.amount,
                "profit_basis": share.basis if share.basis is not None else ZERO,
                "realised": share.realised,
                "unrealised": share.unrealised,
                "ratio": facts.ratio,
                "paid_before": share.paid_before,
                "reason": share.reason,
                "transfer_id": None,
                "created_at": now,
            }
            if share.status == "paid":
                pending.append((share_row, len(specs)))
                specs.append(
                    TransferSpec(
                        key=share_key(spec.key, copy_id),
                        code=SHARE_CODE,
                        legs=(
                            Leg(follower_cash(copy_id), facts.asset, -share.amount),
                            Leg(leader_spot, facts.asset, share.amount),
                        ),
                        memo=f"profit share of copy {copy_id} ({spec.key})",
                        refs=refs,
                        at=now,
                    )
                )
            payouts.append(share_row)
            self._tally(report, spec, facts, share)
            before = batch.states.get((copy_id, facts.asset), StateRow())
            states[(copy_id, facts.asset)] = _state_row(
                copy_id,
                facts.asset,
                before,
                share,
                cycle_id,
                final=spec.is_final,
                now=now,
            )
            for asset, amount in rebates.items():
                row = {
                    **share_row,
                    "kind": "rebate",
                    "asset": asset,
                    "status": "paid",
                    "amount": amount,
                    "profit_basis": ZERO,
                    "realised": None,
                    "unrealised": None,
                    "ratio": ZERO,
                    "paid_before": ZERO,
                    "reason": None,
                }
                pending.append((row, len(specs)))
                specs.append(
                    TransferSpec(
                        key=rebate_key(spec.key, copy_id, asset),
                        code=REBATE_CODE,
                        legs=(
                            Leg(leader_rebates(facts.portfolio_id), asset, -amount),
                            Leg(leader_spot, asset, amount),
                        ),
                        memo=f"fee rebates of copy {copy_id} ({spec.key})",
                        refs=refs,
                        at=now,
                    )
                )
                payouts.append(row)
                key = (copy_id, asset)
                state = states.get(key) or _state_row(
                    copy_id,
                    asset,
                    batch.states.get(key, StateRow()),
                    None,
                    cycle_id,
                    final=spec.is_final,
                    now=now,
                )
                state["rebate_paid"] = state["rebate_paid"] + amount
                states[key] = state
                totals = report.per_leader[(facts.leader_person_id, asset)]
                totals.rebates += amount
            copy_row = batch.copies[copy_id]
            before = batch.states.get((copy_id, facts.asset), StateRow())
            if (
                copy_row.status == "stopped"
                and (spec.is_final or before.final_cycle_id is not None)
                and before.cash_released_at is None
            ):
                cash = dict(batch.cash.get(copy_id, {}))
                if share.status == "paid":
                    cash[facts.asset] = cash.get(facts.asset, ZERO) - share.amount
                release, held = cash_to_release(share, batch.open_positions.get(copy_id, ()), cash)
                if held:
                    report.held.append(
                        PayoutLine(
                            spec.key,
                            copy_id,
                            facts.portfolio_id,
                            facts.leader_person_id,
                            "cash_release",
                            facts.asset,
                            "held",
                            cash.get(facts.asset, ZERO),
                            held,
                        )
                    )
                else:
                    for asset, amount in release.items():
                        specs.append(
                            TransferSpec(
                                key=release_key(spec.key, copy_id, asset),
                                code=RELEASE_CODE,
                                legs=(
                                    Leg(follower_cash(copy_id), asset, -amount),
                                    Leg(person_spot(copy_row.follower_person_id), asset, amount),
                                ),
                                memo=f"cash of stopped copy {copy_id} back to its follower",
                                refs=refs,
                                at=now,
                            )
                        )
                        report.cash_returned[asset] = report.cash_returned.get(asset, ZERO) + amount
                    states[(copy_id, facts.asset)]["cash_released_at"] = now
            report.copies_settled += 1
        results = Ledger(session).post_many(specs)
        for row, index in pending:
            row["transfer_id"] = results[index].transfer_id
        raw = Raw(session)
        raw.insert("settlement_payouts", _PAYOUT_COLUMNS, [_payout_values(raw, p) for p in payouts])
        _upsert_states(raw, list(states.values()))
        finals = [cid for cid, spec in items if spec.is_final]
        if finals:  # the stop events these final cycles settle (copytrade.engine.stop_events)
            session.execute(
                update(CopyStopEvent)
                .where(CopyStopEvent.copy_id.in_(finals), CopyStopEvent.settled_at.is_(None))
                .values(settled_at=now)
            )

    @staticmethod
    def _tally(report: RunReport, spec: CycleSpec, facts, share: ShareDecision) -> None:
        report.counts[share.status] += 1
        if share.status == "paid":
            totals = report.per_leader[(facts.leader_person_id, facts.asset)]
            totals.shares += share.amount
            totals.copies_paid += 1
        elif share.status in ("paused", "deferred"):
            line = PayoutLine(
                spec.key,
                facts.copy_id,
                facts.portfolio_id,
                facts.leader_person_id,
                "profit_share",
                facts.asset,
                share.status,
                share.amount,
                share.reason,
            )
            (report.paused if share.status == "paused" else report.deferred).append(line)

    def _emit(self, stage: str, index: int, copies: int, done: int, total: int) -> None:
        if self.on_batch:
            self.on_batch(BatchEvent(stage, index, copies, done, total))


def _state_row(
    copy_id: int,
    asset: str,
    before: StateRow,
    share: ShareDecision | None,
    cycle_id: int,
    *,
    final: bool,
    now: datetime,
) -> dict:
    """Return a copy's state after this cycle (share columns only move on the settlement asset)."""
    row = {
        "copy_id": copy_id,
        "asset": asset,
        "share_paid": before.share_paid,
        "peak_profit": before.peak_profit,
        "outstanding": before.outstanding,
        "rebate_paid": before.rebate_paid,
        "last_cycle_id": cycle_id,
        "final_cycle_id": cycle_id if final else before.final_cycle_id,
        "cash_released_at": before.cash_released_at,
        "updated_at": now,
    }
    if share is not None:
        if share.status == "paid":
            row["share_paid"] = before.share_paid + share.amount
        row["peak_profit"] = share.peak_after
        row["outstanding"] = share.amount if share.status in ("paused", "deferred") else ZERO
    return row


def _dialect_insert(session: Session):
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    return dialect_insert


_PAYOUT_COLUMNS = (
    "cycle_id",
    "copy_id",
    "portfolio_id",
    "kind",
    "asset",
    "status",
    "amount",
    "profit_basis",
    "realised",
    "unrealised",
    "ratio",
    "paid_before",
    "reason",
    "transfer_id",
    "created_at",
)
_STATE_COLUMNS = (
    "copy_id",
    "asset",
    "share_paid",
    "peak_profit",
    "outstanding",
    "rebate_paid",
    "last_cycle_id",
    "final_cycle_id",
    "cash_released_at",
    "updated_at",
)


def _roomy_cache(session: Session) -> None:
    """Give SQLite a 256 MB page cache for the batch (its default is 2 MB).

    A batch inserts tens of thousands of transfers whose unique keys and hashes land on random
    pages of indexes that grow with the ledger; with the default cache every insert rereads them.
    """
    if session.get_bind().dialect.name == "sqlite":
        session.connection().exec_driver_sql("PRAGMA cache_size = -262144")


def _opt(value):
    return None if value is None else units(value)


def _payout_values(raw: Raw, r: dict) -> tuple:
    """Return a payout row in ``_PAYOUT_COLUMNS`` order, as the columns store it."""
    return (
        r["cycle_id"],
        r["copy_id"],
        r["portfolio_id"],
        r["kind"],
        r["asset"],
        r["status"],
        units(r["amount"], "amount"),
        units(r["profit_basis"], "profit_basis"),
        _opt(r["realised"]),
        _opt(r["unrealised"]),
        units(r["ratio"], "ratio"),
        units(r["paid_before"], "paid_before"),
        r["reason"],
        r["transfer_id"],
        raw.stamp(r["created_at"]),
    )


_STATE_ARRAYS = ("int", "text", *["bigint"] * 4, "int", "int", "timestamptz", "timestamptz")


def _upsert_states(raw: Raw, rows: list[dict]) -> None:
    """Insert or update each copy's carried state (one statement, every row).

    PostgreSQL gets the rows as one array per column (``unnest``): ``executemany`` ran the
    upsert once per row, a tenth of a batch's time.
    """
    values = [
        (
            r["copy_id"],
            r["asset"],
            units(r["share_paid"]),
            units(r["peak_profit"]),
            units(r["outstanding"]),
            units(r["rebate_paid"]),
            r["last_cycle_id"],
            r["final_cycle_id"],
            raw.stamp(r["cash_released_at"]),
            raw.stamp(r["updated_at"]),
        )
        for r in rows
    ]
    if not values:
        return
    columns = ", ".join(_STATE_COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in _STATE_COLUMNS[2:])
    conflict = f" ON CONFLICT (copy_id, asset) DO UPDATE SET {updates}"
    if raw.postgres:
        arrays = ", ".join(f"?::{t}[]" for t in _STATE_ARRAYS)
        raw.rows(
            f"INSERT INTO copy_settlement_states ({columns}) "
            f"SELECT * FROM unnest({arrays}){conflict}",
            [list(column) for column in zip(*values, strict=True)],
        )
        return
    raw.insert("copy_settlement_states", _STATE_COLUMNS, values, suffix=conflict)


def _open_cycles(session: Session, specs: Sequence[CycleSpec]) -> dict[str, tuple[int, str]]:
    """Create the cycle rows that do not exist yet; return ``key → (id, status)`` for all."""
    keys = [s.key for s in specs]
    found = _cycles_by_key(session, keys)
    missing = [s for s in specs if s.key not in found]
    if missing:
        stmt = _dialect_insert(session)(SettlementCycle.__table__).on_conflict_do_nothing(
            index_elements=["cycle_key"]
        )
        now = clock.now()
        session.execute(
            stmt,
            [
                {
                    "cycle_key": s.key,
                    "kind": s.kind,
                    "trigger": s.trigger,
                    "copy_id": s.copy_id,
                    "as_of": s.as_of,
                    "status": "running",
                    "started_at": now,
                }
                for s in missing
            ],
        )
        found.update(_cycles_by_key(session, [s.key for s in missing]))
    return found


def _cycles_by_key(session: Session, keys: Sequence[str]) -> dict[str, tuple[int, str]]:
    out: dict[str, tuple[int, str]] = {}
    for chunk in chunks(list(keys)):
        rows = session.execute(
            select(SettlementCycle.cycle_key, SettlementCycle.id, SettlementCycle.status).where(
                SettlementCycle.cycle_key.in_(chunk)
            )
        )
        out.update({key: (cid, status) for key, cid, status in rows})
    return out


def _record_gate(
    session: Session, cycle_ids: list[int], specs: Sequence[CycleSpec], passed: bool, reason: str
) -> None:
    """Record the gate's verdict on the open cycles; a block is also written to the audit log."""
    for chunk in chunks(cycle_ids):
        session.execute(
            update(SettlementCycle)
            .where(SettlementCycle.id.in_(chunk))
            .values(
                validation_passed=passed,
                status="running" if passed else "blocked",
                blocked_reason=None if passed else reason,
            ),
            execution_options={"synchronize_session": False},
        )
    if not passed:
        session.add(
            AuditEntry(
                actor="system",
                action="settlement_blocked",
                subject_type="settlement_cycle",
                subject_id=specs[0].key
                if len(specs) == 1
                else f"{specs[0].key} (+{len(specs) - 1})",
                rule="R-LED-7",
                reason=reason,
                details={"cycles": [s.key for s in specs][:1000]},
            )
        )


def _cycle_totals(session: Session, cycle_ids: list[int]) -> dict[int, dict]:
    """Return each cycle's payouts by kind and status (count, amount), whatever run wrote them."""
    table = SettlementPayout.__table__
    out: dict[int, dict] = {}
    for chunk in chunks(cycle_ids):
        rows = session.execute(
            select(
                table.c.cycle_id,
                table.c.kind,
                table.c.status,
                table.c.asset,
                func.count(),
                func.sum(raw_units(table.c.amount)),
            )
            .where(table.c.cycle_id.in_(chunk))
            .group_by(table.c.cycle_id, table.c.kind, table.c.status, table.c.asset)
        )
        for cid, kind, status, asset, count, total in rows:
            out.setdefault(cid, {})[f"{kind}:{status}:{asset}"] = {
                "count": count,
                "amount": str(from_units(int(total or 0))),
            }
    return out


def _closed_capital(session: Session):
    """Return (address, asset, amount, portfolio id, leader id) of closed portfolios' capital."""
    closed = dict(
        session.execute(
            select(LeadPortfolio.id, LeadPortfolio.leader_person_id).where(
                LeadPortfolio.status == "closed"
            )
        ).all()
    )
    by_address = {leader_capital(pid): pid for pid in closed}
    out = []
    for chunk in chunks(sorted(by_address)):
        for address, asset, amount in session.execute(
            select(LedgerAccount.address, LedgerAccount.asset, LedgerAccount.balance).where(
                LedgerAccount.address.in_(chunk), raw_units(LedgerAccount.balance) > 0
            )
        ):
            pid = by_address[address]
            out.append((address, asset, amount, pid, closed[pid]))
    return out


def _capital_pending(session: Session) -> bool:
    return bool(_closed_capital(session))


def _release_capital(session: Session, report: RunReport) -> None:
    """Hand a closed portfolio's capital back to its leader once the leader holds no position.

    R-LEAD-10 leaves the capital in ``leader:<pid>:capital`` until settlement; an open position
    (by the leader's own fills) keeps it there, reported, until the next run.
    """
    balances = _closed_capital(session)
    if not balances:
        return
    holding = {pid for *_, pid, _ in balances}
    lf = LeaderFill.__table__
    qty = raw_units(lf.c.quantity)
    open_rows = session.execute(
        select(lf.c.portfolio_id, lf.c.symbol)
        .where(lf.c.portfolio_id.in_(sorted(holding)))
        .group_by(lf.c.portfolio_id, lf.c.symbol)
        .having(func.sum(case((lf.c.side == "buy", qty), else_=-qty)) != 0)
    ).all()
    still_open: dict[int, list[str]] = {}
    for pid, symbol in open_rows:
        still_open.setdefault(pid, []).append(symbol)
    specs = []
    for address, asset, amount, pid, leader in balances:
        if pid in still_open:
            reason = (
                f"the leader still holds {', '.join(still_open[pid])}; capital stays (R-LEAD-10)"
            )
            report.held.append(
                PayoutLine(
                    "capital", 0, pid, leader, "capital_release", asset, "held", amount, reason
                )
            )
            continue
        specs.append(
            TransferSpec(
                key=f"release:capital:{pid}:{asset}:{amount}",
                code=CAPITAL_CODE,
                legs=(Leg(address, asset, -amount), Leg(person_spot(leader), asset, amount)),
                memo=f"capital of closed portfolio {pid} back to its leader",
                refs={"portfolio_id": pid},
            )
        )
        report.capital_returned[asset] = report.capital_returned.get(asset, ZERO) + amount
    Ledger(session).post_many(specs)
