"""The ledger's integrity rules as SQL: each query returns the rows that break its rule.

One or more checks per rule (R-LED-1 … R-LED-6, R-X-4, plus R-FEE-4 which settlement relies on
and R-IN-3: no lead portfolio with an open ingest gap).
Every query runs against the ledger database through GX's SQL datasource and must return no row.
Amounts are BIGINT 1e-8 units, so every sum and comparison here is exact integer arithmetic.
PostgreSQL's ``SUM(bigint)`` is ``numeric``: a sum that is then divided is cast back to BIGINT
so ``/`` stays integer division (rounding down, as R-SET-10 wants) on both databases.

GX substitutes ``{batch}`` with the check's table. In a query with a JOIN it becomes a bare
parenthesised subquery, so it is always given an alias there; in a query without a JOIN GX aliases
it itself, so it never is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from copytrade.domain.money import E8 as UNIT  # units of 1e-8 in one whole

GENESIS = "0" * 64


@dataclass(frozen=True, slots=True)
class RuleCheck:
    """One check: its name, the rule it proves, the table it runs on, and the offending-rows query."""

    name: str
    rule: str
    table: str
    query: str
    description: str


_BIND_LIKE = re.compile(r":(?=[A-Za-z_])")


def ledger_checks(dialect: str) -> list[RuleCheck]:
    """Return every check, with SQL written for ``dialect`` (``sqlite`` or ``postgresql``).

    GX runs each query through SQLAlchemy's ``text()``, where ``:name`` is a bind parameter, so
    the colons of literal addresses (``':cash'``) are escaped.
    """
    return [replace(c, query=_BIND_LIKE.sub(r"\\:", c.query)) for c in _checks(dialect)]


def _checks(dialect: str) -> list[RuleCheck]:
    return [
        # -- R-LED-1: double entry ------------------------------------------------------------
        RuleCheck(
            "postings_sum_to_zero_per_transfer_and_asset",
            "R-LED-1",
            "ledger_postings",
            "SELECT transfer_id, asset, SUM(amount) AS total FROM {batch} "
            "GROUP BY transfer_id, asset HAVING SUM(amount) <> 0",
            "Every transfer's postings sum to zero in each asset.",
        ),
        RuleCheck(
            "every_transfer_has_two_postings",
            "R-LED-1",
            "ledger_transfers",
            "SELECT t.id, t.seq FROM {batch} t LEFT JOIN ledger_postings p ON p.transfer_id = t.id "
            "GROUP BY t.id, t.seq HAVING COUNT(p.id) < 2",
            "Every transfer moves money between at least two postings.",
        ),
        # -- R-LED-2: balances ----------------------------------------------------------------
        RuleCheck(
            "balances_equal_sum_of_postings",
            "R-LED-2",
            "ledger_accounts",
            # a shared account's balance is its row (stream 0's part) plus every stream's stripe
            "SELECT a.id, a.address, a.asset, a.balance + COALESCE(b.stripes, 0) AS balance, "
            "COALESCE(p.total, 0) AS postings "
            "FROM {batch} a LEFT JOIN (SELECT account_id, SUM(amount) AS total "
            "FROM ledger_postings GROUP BY account_id) p ON p.account_id = a.id "
            "LEFT JOIN (SELECT account_id, SUM(balance) AS stripes FROM ledger_balance_stripes "
            "GROUP BY account_id) b ON b.account_id = a.id "
            "WHERE a.balance + COALESCE(b.stripes, 0) <> COALESCE(p.total, 0)",
            "Every account's balance equals the sum of its postings.",
        ),
        RuleCheck(
            "no_forbidden_negative_balance",
            "R-LED-2",
            "ledger_accounts",
            "SELECT a.id, a.address, a.asset, a.balance FROM {batch} a "
            "LEFT JOIN ledger_balance_stripes b ON b.account_id = a.id "
            "WHERE (a.balance < 0 OR b.balance < 0) "
            "AND a.address NOT LIKE 'exchange:%' AND a.address NOT LIKE 'external:%'",
            "Only exchange: and external: accounts may go below zero (nor any stream's part of "
            "another shared account).",
        ),
        RuleCheck(
            "negative_policy_follows_address",
            "R-LED-2",
            "ledger_accounts",
            "SELECT id, address FROM {batch} WHERE "
            "(CASE WHEN allow_negative THEN 1 ELSE 0 END) <> "
            "(CASE WHEN address LIKE 'exchange:%' OR address LIKE 'external:%' THEN 1 ELSE 0 END)",
            "An account's may-go-negative flag is the one its address kind gives.",
        ),
        RuleCheck(
            "posting_asset_is_account_asset",
            "R-LED-2",
            "ledger_postings",
            "SELECT p.id, p.asset, a.asset AS account_asset FROM {batch} p "
            "JOIN ledger_accounts a ON a.id = p.account_id WHERE p.asset <> a.asset",
            "Every posting is in its account's asset.",
        ),
        # -- R-LED-3: every exchange fill once ------------------------------------------------
        RuleCheck(
            "follower_trade_ids_unique_per_copy",
            "R-LED-3",
            "follower_fills",
            "SELECT copy_id, exchange_trade_id, COUNT(*) AS n FROM {batch} "
            "GROUP BY copy_id, exchange_trade_id HAVING COUNT(*) > 1",
            "A follower fill's exchange trade id appears once per copy account.",
        ),
        RuleCheck(
            "follower_trade_ids_unique_per_exchange_account",
            "R-LED-3",
            "follower_fills",
            "SELECT exchange_account_id, exchange_trade_id, COUNT(*) AS n FROM {batch} "
            "WHERE exchange_account_id IS NOT NULL "
            "GROUP BY exchange_account_id, exchange_trade_id HAVING COUNT(*) > 1",
            "A follower fill's exchange trade id appears once per exchange account.",
        ),
        RuleCheck(
            "leader_trade_ids_unique_per_portfolio",
            "R-LED-3",
            "leader_fills",
            "SELECT portfolio_id, exchange_trade_id, COUNT(*) AS n FROM {batch} "
            "GROUP BY portfolio_id, exchange_trade_id HAVING COUNT(*) > 1",
            "A leader fill's exchange trade id appears once per lead portfolio.",
        ),
        # -- R-LED-4: copied orders reference what they copy ----------------------------------
        RuleCheck(
            "copied_orders_reference_leader_fill_and_copy",
            "R-LED-4",
            "follower_order_intents",
            "SELECT i.id, i.client_order_id FROM {batch} i "
            "LEFT JOIN leader_fills l ON l.id = i.leader_fill_id "
            "LEFT JOIN copies c ON c.id = i.copy_id WHERE i.kind = 'copy' AND "
            "(l.id IS NULL OR c.id IS NULL OR l.portfolio_id <> c.portfolio_id)",
            "Every copied order references the leader fill it copies and a copy of that "
            "leader's portfolio.",
        ),
        RuleCheck(
            "orders_match_their_intent",
            "R-LED-4",
            "follower_orders",
            "SELECT o.id, o.client_order_id FROM {batch} o "
            "LEFT JOIN follower_order_intents i ON i.id = o.intent_id "
            "WHERE i.id IS NULL OR o.copy_id <> i.copy_id OR o.client_order_id <> i.client_order_id",
            "Every order sent carries its intent's copy and client order id.",
        ),
        RuleCheck(
            "fills_match_their_order",
            "R-LED-4",
            "follower_fills",
            "SELECT f.id FROM {batch} f JOIN follower_orders o ON o.id = f.order_id "
            "JOIN follower_order_intents i ON i.id = o.intent_id WHERE f.copy_id <> o.copy_id "
            "OR (i.kind = 'copy' AND (f.leader_fill_id IS NULL "
            "OR f.leader_fill_id <> i.leader_fill_id))",
            "Every follower fill belongs to its order's copy and references its leader fill.",
        ),
        RuleCheck(
            "intent_client_ids_unique",
            "R-LED-4",
            "follower_order_intents",
            "SELECT client_order_id, COUNT(*) AS n FROM {batch} "
            "GROUP BY client_order_id HAVING COUNT(*) > 1",
            "Every follower order intent has its own client order id.",
        ),
        RuleCheck(
            "order_client_ids_unique",
            "R-LED-4",
            "follower_orders",
            "SELECT client_order_id, COUNT(*) AS n FROM {batch} "
            "GROUP BY client_order_id HAVING COUNT(*) > 1",
            "Every follower order has its own client order id.",
        ),
        # -- R-LED-5: shares never exceed the ratio of the peak, never negative ---------------
        RuleCheck(
            "payouts_non_negative",
            "R-LED-5",
            "settlement_payouts",
            "SELECT id, amount FROM {batch} WHERE amount < 0",
            "Every recorded payout is zero or more.",
        ),
        RuleCheck(
            "payout_transfers_flow_to_the_leader",
            "R-LED-5",
            "ledger_transfers",
            "SELECT t.id, t.seq, t.code FROM {batch} t "
            "JOIN ledger_postings p ON p.transfer_id = t.id "
            "JOIN ledger_accounts a ON a.id = p.account_id "
            "WHERE t.code IN ('profit_share', 'rebate_payout') GROUP BY t.id, t.seq, t.code "
            "HAVING COUNT(*) <> 2 "
            "OR SUM(CASE WHEN p.amount > 0 AND a.address LIKE 'person:%:spot' THEN 1 ELSE 0 END) <> 1 "
            "OR SUM(CASE WHEN p.amount < 0 AND ((t.code = 'profit_share' AND a.address LIKE "
            "'follower:%:cash') OR (t.code = 'rebate_payout' AND a.address LIKE "
            "'leader:%:rebates')) THEN 1 ELSE 0 END) <> 1",
            "Every share moves a positive amount from a copy's cash to a leader's spot wallet, "
            "every rebate payout from the leader's rebates: nothing is ever refunded (R-SET-8).",
        ),
        RuleCheck(
            "shares_within_ratio_of_peak_profit",
            "R-LED-5",
            "copies",
            "SELECT c.id AS copy_id, COALESCE(s.paid, 0) AS paid, COALESCE(st.share_paid, 0) "
            "AS state_paid, pk.peak, lp.profit_share_ratio AS ratio FROM {batch} c "
            "JOIN lead_portfolios lp ON lp.id = c.portfolio_id "
            "LEFT JOIN (SELECT a.address, -SUM(p.amount) AS paid FROM ledger_postings p "
            "JOIN ledger_transfers t ON t.id = p.transfer_id "
            "JOIN ledger_accounts a ON a.id = p.account_id "
            "WHERE t.code = 'profit_share' AND a.address LIKE 'follower:%' "
            "GROUP BY a.address) s ON s.address = 'follower:' || c.id || ':cash' "
            "LEFT JOIN (SELECT copy_id, MAX(CASE WHEN profit_basis > 0 THEN profit_basis ELSE 0 "
            "END) AS peak FROM settlement_payouts WHERE kind = 'profit_share' GROUP BY copy_id) "
            "pk ON pk.copy_id = c.id "
            "LEFT JOIN copy_settlement_states st ON st.copy_id = c.id "
            "AND st.asset = lp.capital_asset "
            f"WHERE COALESCE(s.paid, 0) > (COALESCE(pk.peak, 0) / {UNIT}) * lp.profit_share_ratio "
            f"+ ((COALESCE(pk.peak, 0) % {UNIT}) * lp.profit_share_ratio) / {UNIT} "
            "OR COALESCE(s.paid, 0) <> COALESCE(st.share_paid, 0)",
            "Per copy, the shares paid in the ledger are at most ratio × the highest profit "
            "ever settled on, and equal the 'already paid' settlement carries.",
        ),
        # -- R-LED-6 / R-FEE-4: rebates -------------------------------------------------------
        RuleCheck(
            "fill_rebate_is_ten_percent_of_fee",
            "R-LED-6",
            "follower_fills",
            "SELECT id, fee, rebate FROM {batch} WHERE fee < 0 OR rebate <> fee / 10",
            "Every fill's rebate is 10 % of its fee, rounded down to 1e-8.",
        ),
        RuleCheck(
            "ledger_rebate_is_ten_percent_of_ledger_fee",
            "R-LED-6",
            "ledger_transfers",
            # A fill's transfers share their key: trading_fee:<fill> and fee_rebate:<fill>; each
            # is matched to the other through the unique key index, not by grouping.
            "SELECT f.id, f.idempotency_key, fp.amount AS fee, rp.amount AS rebate FROM {batch} f "
            "JOIN ledger_postings fp ON fp.transfer_id = f.id AND fp.amount > 0 "
            "LEFT JOIN ledger_transfers r "
            "ON r.idempotency_key = 'fee_rebate:' || SUBSTR(f.idempotency_key, 13) "
            "LEFT JOIN ledger_postings rp ON rp.transfer_id = r.id AND rp.amount > 0 "
            "WHERE f.code = 'trading_fee' "
            "AND (COALESCE(rp.amount, 0) <> fp.amount / 10 OR rp.asset <> fp.asset) "
            "UNION ALL SELECT r.id, r.idempotency_key, NULL, NULL FROM ledger_transfers r "
            "LEFT JOIN ledger_transfers f "
            "ON f.idempotency_key = 'trading_fee:' || SUBSTR(r.idempotency_key, 12) "
            "WHERE r.code = 'fee_rebate' AND f.id IS NULL",
            "Every rebate posted for a fill is 10 % of the fee posted for it, rounded down, in "
            "the fee's asset, and no rebate is posted without its fee (a fill's transfers are "
            "keyed trading_fee:<fill> and fee_rebate:<fill>).",
        ),
        RuleCheck(
            "rebates_account_backs_unpaid_rebates",
            "R-FEE-4",
            "lead_portfolios",
            "SELECT x.portfolio_id, x.asset, SUM(x.v) AS difference FROM ("
            "SELECT c.portfolio_id, f.fee_asset AS asset, f.rebate AS v FROM follower_fills f "
            "JOIN copies c ON c.id = f.copy_id "
            "UNION ALL SELECT portfolio_id, asset, -amount FROM settlement_payouts "
            "WHERE kind = 'rebate' AND status = 'paid' "
            "UNION ALL SELECT CAST(SUBSTR(address, 8, LENGTH(address) - 15) AS BIGINT), asset, "
            "-balance FROM ledger_accounts WHERE address LIKE 'leader:%:rebates') x "
            "JOIN {batch} lp ON lp.id = x.portfolio_id "
            "GROUP BY x.portfolio_id, x.asset HAVING SUM(x.v) <> 0",
            "Each leader's rebates account holds exactly the fills' rebates not yet paid out.",
        ),
        # -- R-IN-3: ingest completeness --------------------------------------------------------
        RuleCheck(
            "no_lead_portfolio_has_an_open_ingest_gap",
            "R-IN-3",
            "ingest_gaps",
            "SELECT id, portfolio_id, symbol, kind, detail FROM {batch} WHERE resolved_at IS NULL",
            "No lead portfolio has a known gap in its fill history or a position drift from the "
            "exchange that is still open (copying is close-only until it is resolved).",
        ),
        # -- R-X-4: the hash chain ------------------------------------------------------------
        RuleCheck(
            "chain_links_every_transfer_to_the_previous",
            "R-X-4",
            "ledger_transfers",
            # Each stream's first transfer links to the stream's genesis: stream 0's is checked
            # here, the others' (a sha256) by the Python recomputation.
            "SELECT t.stream, t.seq FROM {batch} t LEFT JOIN ledger_transfers p "
            "ON p.stream = t.stream AND p.seq = t.seq - 1 "
            f"WHERE t.seq < 1 OR (t.seq = 1 AND t.stream = 0 AND t.prev_hash <> '{GENESIS}') "
            "OR (t.seq > 1 AND (p.id IS NULL OR p.hash <> t.prev_hash))",
            "Within each stream, sequence numbers are contiguous from 1 and each transfer "
            "carries the previous hash.",
        ),
        RuleCheck(
            "chain_head_is_the_last_transfer",
            "R-X-4",
            "ledger_chain_heads",
            "SELECT h.stream, h.last_seq FROM {batch} h LEFT JOIN ledger_transfers t "
            "ON t.stream = h.stream AND t.seq = h.last_seq WHERE h.stream >= 0 AND (h.last_seq <> "
            "(SELECT COALESCE(MAX(x.seq), 0) FROM ledger_transfers x WHERE x.stream = h.stream) "
            f"OR (h.last_seq = 0 AND h.stream = 0 AND h.last_hash <> '{GENESIS}') "
            "OR (h.last_seq > 0 AND (t.id IS NULL OR t.hash <> h.last_hash))) "
            "UNION ALL SELECT DISTINCT t.stream, CAST(NULL AS BIGINT) FROM ledger_transfers t "
            "LEFT JOIN ledger_chain_heads h ON h.stream = t.stream WHERE h.stream IS NULL "
            # stream -1: the root chain's head names the last anchor
            "UNION ALL SELECT h.stream, h.last_seq FROM ledger_chain_heads h "
            "LEFT JOIN ledger_anchors a ON a.seq = h.last_seq WHERE h.stream = -1 AND "
            "(h.last_seq <> (SELECT COALESCE(MAX(seq), 0) FROM ledger_anchors) "
            f"OR (h.last_seq = 0 AND h.last_hash <> '{GENESIS}') "
            "OR (h.last_seq > 0 AND (a.id IS NULL OR a.hash <> h.last_hash)))",
            "Every stream's head names its last transfer and its hash; every stream has a head; "
            "the root chain's head (stream -1) names the last anchor.",
        ),
        RuleCheck(
            "chain_recomputed_without_break",
            "R-X-4",
            "ledger_chain_verifications",
            "SELECT id, first_broken_seq, problem FROM {batch} "
            "WHERE id = (SELECT MAX(id) FROM ledger_chain_verifications) "
            "AND first_broken_seq IS NOT NULL "
            "UNION ALL SELECT 0, NULL, 'the hash chain was never recomputed' "
            "WHERE NOT EXISTS (SELECT 1 FROM ledger_chain_verifications)",
            "The newest recomputation of every digest and hash (sha256, in Python) found no "
            "edited transfer.",
        ),
    ]
