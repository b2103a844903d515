"""Leader rules as pure functions (R-LEAD-1..10)."""

from __future__ import annotations

import random
from decimal import Decimal as D

import pytest

from copytrade.domain.errors import RuleViolation
from copytrade.domain.leaders import (
    CapitalBounds,
    LeaderApplication,
    check_can_close,
    check_capacity_decision,
    check_capacity_request,
    check_free_place,
    check_invitation_code,
    check_leverage,
    check_ratio_unchanged,
    default_follower_cap,
    find_invitation_code,
    has_free_place,
    imitates,
    is_advanced,
    leverage_allowed,
    new_invitation_code,
    portfolio_aum,
    validate_application,
)


def app(**kw) -> LeaderApplication:
    base = dict(
        mode="spot",
        nickname="AlphaAlice",
        description="BTC swings",
        capital="1000",
        agreement_accepted=True,
    )
    base.update(kw)
    return LeaderApplication(**base)


def refused(fn, *args, **kwargs) -> RuleViolation:
    with pytest.raises(RuleViolation) as err:
        fn(*args, **kwargs)
    return err.value


# -- R-LEAD-1 / R-LEAD-2 capital bounds ----------------------------------------------------------


@pytest.mark.parametrize("capital", ["500", "250000", "1,000", "12345.67"])
def test_spot_capital_within_bounds_accepted_R_LEAD_1(capital):
    assert validate_application(app(capital=capital)).capital == D(capital.replace(",", ""))


def test_spot_capital_below_minimum_refused_with_message_R_LEAD_1():
    err = refused(validate_application, app(capital="200"))
    assert (err.field, err.rule) == ("capital", "R-LEAD-1")
    assert "capital 200 USD is below the spot minimum of 500 USD (R-LEAD-1)" in str(err)


@pytest.mark.parametrize("capital", ["499.99999999", "250000.00000001", "-5", "abc", "1e400"])
def test_spot_capital_out_of_bounds_or_malformed_refused_R_LEAD_1(capital):
    err = refused(validate_application, app(capital=capital))
    assert err.field == "capital" and err.rule == "R-LEAD-1"


@pytest.mark.parametrize(
    ("capital", "ok"), [("999", False), ("1000", True), ("500000", True), ("500001", False)]
)
def test_futures_capital_bounds_R_LEAD_2(capital, ok):
    application = app(mode="futures", capital=capital)
    if ok:
        assert validate_application(application).capital == D(capital)
    else:
        assert refused(validate_application, application).rule == "R-LEAD-2"


def test_capital_bounds_are_configuration_R_LEAD_2():
    lowered = CapitalBounds(futures_min=D(100))
    assert validate_application(app(mode="futures", capital="150"), lowered).capital == D(150)


def test_float_capital_refused_R_LEAD_1_R_IN_2():
    assert refused(validate_application, app(capital=600.0)).field == "capital"


# -- R-LEAD-3 application content -----------------------------------------------------------------


def test_application_without_agreement_refused_R_LEAD_3():
    err = refused(validate_application, app(agreement_accepted=False))
    assert (err.field, err.rule) == ("agreement_accepted", "R-LEAD-3")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("nickname", ""),
        ("nickname", "x"),
        ("nickname", "a" * 33),
        ("nickname", "Al\u200bice"),
        ("description", ""),
        ("description", "d" * 501),
        ("mode", "margin"),
    ],
)
def test_application_fields_required_R_LEAD_3(field, value):
    err = refused(validate_application, app(**{field: value}))
    assert (err.field, err.rule) == (field, "R-LEAD-3")


def test_valid_application_normalised_R_LEAD_3():
    valid = validate_application(app(nickname="  AlphaAlice ", mode="SPOT"))
    assert (valid.nickname, valid.mode, valid.visibility, valid.follower_cap) == (
        "AlphaAlice",
        "spot",
        "public",
        300,
    )


# -- R-LEAD-4 visibility -------------------------------------------------------------------------


def test_spot_cannot_be_private_R_LEAD_4():
    err = refused(validate_application, app(visibility="private"))
    assert (err.field, err.rule) == ("visibility", "R-LEAD-4")


def test_futures_private_accepted_and_code_required_to_join_R_LEAD_4():
    valid = validate_application(
        app(mode="futures", visibility="private", capital="2000"), invitation_code="K7Q2M9XA"
    )
    assert valid.visibility == "private"
    check_invitation_code("k7q2-m9xa", "K7Q2M9XA")  # case and separators do not matter
    assert refused(check_invitation_code, None, "K7Q2M9XA").rule == "R-COPY-2"
    assert refused(check_invitation_code, "K7Q2M9XB", "K7Q2M9XA").field == "invitation_code"


def test_invitation_codes_are_fresh_and_code_shaped_R_LEAD_4_R_LEAD_6():
    rng = random.Random(7)
    codes = {new_invitation_code(rng) for _ in range(200)}
    assert len(codes) == 200
    for code in codes:
        assert len(code) == 8 and find_invitation_code(code) == code
        assert not set(code) & set("01OIL")


# -- R-LEAD-5 profit-share ratio -----------------------------------------------------------------


def test_spot_and_public_futures_share_ten_percent_R_LEAD_5():
    assert validate_application(app()).profit_share_ratio == D("0.1")
    assert validate_application(
        app(mode="futures", capital="2000", profit_share_ratio="10%")
    ).profit_share_ratio == D("0.1")
    assert refused(validate_application, app(profit_share_ratio="0.2")).rule == "R-LEAD-5"
    assert (
        refused(
            validate_application, app(mode="futures", capital="2000", profit_share_ratio="0.05")
        ).rule
        == "R-LEAD-5"
    )


@pytest.mark.parametrize(
    ("ratio", "expected"), [("0", D(0)), ("0.3", D("0.3")), ("15%", D("0.15")), (None, D("0.1"))]
)
def test_private_futures_chooses_0_to_30_percent_R_LEAD_5(ratio, expected):
    valid = validate_application(
        app(mode="futures", visibility="private", capital="2000", profit_share_ratio=ratio)
    )
    assert valid.profit_share_ratio == expected


@pytest.mark.parametrize("ratio", ["0.31", "31%", "-0.01", "abc"])
def test_private_futures_ratio_outside_range_refused_R_LEAD_5(ratio):
    err = refused(
        validate_application,
        app(mode="futures", visibility="private", capital="2000", profit_share_ratio=ratio),
    )
    assert (err.field, err.rule) == ("profit_share_ratio", "R-LEAD-5")


def test_ratio_never_changes_after_creation_R_LEAD_5():
    assert refused(check_ratio_unchanged, D("0.1"), "0.2").rule == "R-LEAD-5"


# -- R-LEAD-6 invitation codes in nickname/description --------------------------------------------

private = dict(mode="futures", visibility="private", capital="2000")


@pytest.mark.parametrize(
    "text",
    [
        "Join with K7Q2M9XA",
        "code: k7q2-m9xa",
        "K 7 Q 2 M 9 X A",
        "AB12 CD34 EF",
        "ref ＸＹ１２３４ＺＷ",
        "use x9y8z7w6",
        "a1b2c3d4e5f6",
    ],
)
def test_code_shaped_text_refused_in_private_description_R_LEAD_6(text):
    err = refused(validate_application, app(description=text, **private))
    assert (err.field, err.rule) == ("description", "R-LEAD-6")


def test_code_shaped_nickname_refused_R_LEAD_6():
    err = refused(validate_application, app(nickname="Trader9X7Q", **private))
    assert (err.field, err.rule) == ("nickname", "R-LEAD-6")


def test_own_code_found_in_any_spelling_R_LEAD_6():
    assert find_invitation_code("ping me: K.7.Q.2 / M-9 X_A", "K7Q2M9XA") == "K7Q2M9XA"
    assert find_invitation_code("kq7 2m9xa", "KQ72M9XA") == "KQ72M9XA"
    err = refused(
        validate_application,
        app(description="join via K7Q2 M9XA", **private),
        invitation_code="K7Q2M9XA",
    )
    assert err.rule == "R-LEAD-6"


@pytest.mark.parametrize(
    "text",
    [
        "Trading since 2019 on BTC and ETH",
        "I am 25 and use 2x leverage",
        "BTC/USDT scalper, 5x max",
        "Top 10 trader",
        "ETH-USDT perps",
        "Returns 120% in Q1",
    ],
)
def test_ordinary_text_is_not_a_code_R_LEAD_6(text):
    assert find_invitation_code(text) is None
    validate_application(app(description=text, **private))


def test_public_portfolios_not_checked_for_codes_R_LEAD_6():
    validate_application(app(description="my friend's code K7Q2M9XA"))


# -- R-LEAD-7 follower cap and capacity ------------------------------------------------------------


def test_default_caps_spot_300_futures_200_R_LEAD_7():
    assert (default_follower_cap("spot"), default_follower_cap("futures")) == (300, 200)


def test_full_portfolio_refuses_new_followers_R_LEAD_7():
    assert has_free_place(299, 300) and not has_free_place(300, 300)
    check_free_place(199, 200)
    err = refused(check_free_place, 200, 200)
    assert err.rule == "R-LEAD-7" and "full" in err.message


@pytest.mark.parametrize(
    ("requested", "ok"),
    [
        ("400", True),
        ("1000", True),
        ("300", False),
        ("250", False),
        ("1001", False),
        ("lots", False),
    ],
)
def test_capacity_request_must_raise_cap_within_maximum_R_LEAD_7(requested, ok):
    if ok:
        assert check_capacity_request(300, requested) == int(requested)
    else:
        err = refused(check_capacity_request, 300, requested)
        assert (err.field, err.rule) == ("requested_cap", "R-LEAD-7")


def test_capacity_request_decided_once_R_LEAD_7():
    check_capacity_decision("pending")
    assert refused(check_capacity_decision, "approved").rule == "R-LEAD-7"


# -- R-LEAD-8 leverage cap -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("aum", "leverage", "allowed"),
    [
        ("99999.99", 10, True),
        ("100000", 5, True),
        ("100000", 6, False),
        ("250000", 20, False),
        ("250000", 1, True),
        ("1000", 0, False),
    ],
)
def test_leverage_above_5x_refused_from_100k_aum_R_LEAD_8(aum, leverage, allowed):
    assert leverage_allowed(D(aum), leverage) is allowed
    if allowed:
        check_leverage(D(aum), leverage)
    else:
        assert refused(check_leverage, D(aum), leverage).rule == "R-LEAD-8"


def test_aum_is_leader_capital_plus_copy_equity_R_LEAD_8():
    aum = portfolio_aum(D("60000"), [D("30000"), D("10000")])
    assert aum == D("100000") and not leverage_allowed(aum, 6)


# -- R-LEAD-9 impersonation ---------------------------------------------------------------------


def test_advanced_means_more_than_200_followers_R_LEAD_9():
    assert not is_advanced(200) and is_advanced(201)


@pytest.mark.parametrize(
    "other",
    [
        "CryptoKing",
        "cryptoking",
        "CRYPTO KING",
        "Crypto_King!",
        "Crypto.King",
        "Crypt0King",  # zero for O
        "CryptoK1ng",  # one for i
        "CryptoKlng",  # l for i
        "CrурtоKing",  # Cyrillic у, р, о
        "𝐂𝐫𝐲𝐩𝐭𝐨𝐊𝐢𝐧𝐠",  # mathematical bold
        "ＣｒｙｐｔｏＫｉｎｇ",  # full width
        "Crypto\u200bKing",  # zero-width space
        "Crÿptö Kíng",  # accents
    ],
)
def test_imitations_detected_R_LEAD_9(other):
    assert imitates(other, "CryptoKing")
    assert imitates("CryptoKing", other)


def test_look_alike_digits_and_letters_R_LEAD_9():
    assert imitates("5AM", "Sam")
    assert imitates("Moon", "Rnoon")
    assert imitates("W0lf", "Wolf")
    assert imitates("ll1ya", "Iliya")


@pytest.mark.parametrize("other", ["CryptoQueen", "CryptoKings", "Crypto", "KingCrypto", "", "!!!"])
def test_different_nicknames_do_not_imitate_R_LEAD_9(other):
    assert not imitates(other, "CryptoKing")


# -- R-LEAD-10 close ------------------------------------------------------------------------------


def test_only_active_portfolio_can_close_R_LEAD_10():
    check_can_close("active")
    assert refused(check_can_close, "closed").rule == "R-LEAD-10"
