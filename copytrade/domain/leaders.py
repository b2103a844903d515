"""Leader rules (R-LEAD-1..10): applications, invitation codes, follower caps, leverage cap, impersonation.

Everything here is pure: bounds and caps come in as parameters (their defaults are the SPEC's),
and every refusal is a ``RuleViolation`` naming the field, the value and the rule.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

from copytrade.domain.errors import RuleViolation
from copytrade.domain.inputs import decimal_field, ratio_field

SPOT, FUTURES = "spot", "futures"
MODES = (SPOT, FUTURES)
PUBLIC, PRIVATE = "public", "private"

DEFAULT_RATIO = Decimal("0.1")  # R-LEAD-5: spot and futures public
MAX_PRIVATE_RATIO = Decimal("0.3")  # R-LEAD-5: futures private, 0 to 30 %

NICKNAME_MIN, NICKNAME_MAX = 2, 32
DESCRIPTION_MAX = 500

DEFAULT_FOLLOWER_CAP = {SPOT: 300, FUTURES: 200}  # R-LEAD-7
MAX_FOLLOWER_CAP = 1_000  # the highest cap an operator may grant (product decision)
ADVANCED_FOLLOWERS = 200  # R-LEAD-9: "advanced" means more than this many followers

LEVERAGE_AUM_THRESHOLD = Decimal(100_000)  # R-LEAD-8, USD
LEVERAGE_CAP_AT_THRESHOLD = 5

# Invitation codes the platform issues: 8 characters from an alphabet without look-alikes
# (no 0/O, 1/I/L), always mixing letters and digits, so every issued code has the detected shape.
CODE_ALPHABET_LETTERS = "ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_ALPHABET_DIGITS = "23456789"
CODE_LENGTH = 8
CODE_SHAPE_MIN, CODE_SHAPE_MAX = 6, 12


@dataclass(frozen=True, slots=True)
class CapitalBounds:
    """Capital bounds of R-LEAD-1 (spot) and R-LEAD-2 (futures), in USD; configuration."""

    spot_min: Decimal = Decimal(500)
    spot_max: Decimal = Decimal(250_000)
    futures_min: Decimal = Decimal(1_000)
    futures_max: Decimal = Decimal(500_000)

    def for_mode(self, mode: str) -> tuple[Decimal, Decimal, str]:
        if mode == SPOT:
            return self.spot_min, self.spot_max, "R-LEAD-1"
        return self.futures_min, self.futures_max, "R-LEAD-2"


DEFAULT_BOUNDS = CapitalBounds()


@dataclass(frozen=True, slots=True)
class LeaderApplication:
    """What an applicant submits (R-LEAD-3); values may still be raw user input."""

    mode: str
    nickname: str
    description: str
    capital: object
    agreement_accepted: bool
    visibility: str = PUBLIC
    profit_share_ratio: object | None = None


@dataclass(frozen=True, slots=True)
class ValidApplication:
    """An application that passed every rule, with its values normalised."""

    mode: str
    nickname: str
    description: str
    capital: Decimal
    visibility: str
    profit_share_ratio: Decimal
    follower_cap: int


def validate_application(
    application: LeaderApplication,
    bounds: CapitalBounds = DEFAULT_BOUNDS,
    invitation_code: str | None = None,
) -> ValidApplication:
    """Check an application against R-LEAD-1..6 and return it normalised, or raise ``RuleViolation``.

    ``invitation_code`` is the code the platform will issue for a private portfolio; the nickname
    and description must contain neither it nor anything shaped like a code (R-LEAD-6).
    """
    mode = (application.mode or "").strip().lower()
    if mode not in MODES:
        raise RuleViolation(
            "mode",
            application.mode,
            "R-LEAD-3",
            f"mode {application.mode!r} is not spot or futures",
        )
    if application.agreement_accepted is not True:
        raise RuleViolation(
            "agreement_accepted",
            application.agreement_accepted,
            "R-LEAD-3",
            "the user service agreement must be accepted to become a leader",
        )
    nickname = check_nickname(application.nickname)
    description = check_description(application.description)
    capital = check_capital(mode, application.capital, bounds)
    visibility = (application.visibility or PUBLIC).strip().lower()
    if visibility not in (PUBLIC, PRIVATE):
        raise RuleViolation(
            "visibility",
            application.visibility,
            "R-LEAD-4",
            f"visibility {visibility!r} is not public or private",
        )
    if mode == SPOT and visibility == PRIVATE:
        raise RuleViolation(
            "visibility",
            visibility,
            "R-LEAD-4",
            "spot portfolios are public; only futures portfolios can be private",
        )
    ratio = check_profit_share_ratio(mode, visibility, application.profit_share_ratio)
    if visibility == PRIVATE:
        check_no_invitation_code("nickname", nickname, invitation_code)
        check_no_invitation_code("description", description, invitation_code)
    return ValidApplication(
        mode=mode,
        nickname=nickname,
        description=description,
        capital=capital,
        visibility=visibility,
        profit_share_ratio=ratio,
        follower_cap=DEFAULT_FOLLOWER_CAP[mode],
    )


def check_nickname(nickname: object) -> str:
    """Return the nickname stripped; refuse an empty, too long or control-character one (R-LEAD-3)."""
    text = nickname.strip() if isinstance(nickname, str) else ""
    if not NICKNAME_MIN <= len(text) <= NICKNAME_MAX:
        raise RuleViolation(
            "nickname",
            nickname,
            "R-LEAD-3",
            f"a nickname of {NICKNAME_MIN} to {NICKNAME_MAX} characters is required",
        )
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in text):
        raise RuleViolation(
            "nickname",
            nickname,
            "R-LEAD-3",
            "a nickname may not contain control or invisible characters",
        )
    return text


def check_description(description: object) -> str:
    """Return the short description stripped; refuse one over the length limit (R-LEAD-3)."""
    text = description.strip() if isinstance(description, str) else ""
    if not text or len(text) > DESCRIPTION_MAX:
        raise RuleViolation(
            "description",
            description,
            "R-LEAD-3",
            f"a short portfolio description of 1 to {DESCRIPTION_MAX} characters is required",
        )
    return text


def check_capital(mode: str, capital: object, bounds: CapitalBounds = DEFAULT_BOUNDS) -> Decimal:
    """Return the capital as an exact Decimal within the mode's bounds (R-LEAD-1 spot, R-LEAD-2 futures)."""
    low, high, rule = bounds.for_mode(mode)
    amount = decimal_field("capital", capital, rule)
    if amount < low:
        raise RuleViolation(
            "capital",
            amount,
            rule,
            f"capital {amount} USD is below the {mode} minimum of {low} USD",
        )
    if amount > high:
        raise RuleViolation(
            "capital",
            amount,
            rule,
            f"capital {amount} USD is above the {mode} maximum of {high} USD",
        )
    return amount


def check_profit_share_ratio(mode: str, visibility: str, ratio: object | None) -> Decimal:
    """Return the profit-share ratio fixed at creation (R-LEAD-5).

    Spot and futures public portfolios share 10 %; a futures private portfolio chooses 0 to 30 %
    (10 % when it does not say).
    """
    if ratio is None or (isinstance(ratio, str) and not ratio.strip()):
        return DEFAULT_RATIO
    value = ratio_field("profit_share_ratio", ratio, "R-LEAD-5")
    if mode == FUTURES and visibility == PRIVATE:
        if not Decimal(0) <= value <= MAX_PRIVATE_RATIO:
            raise RuleViolation(
                "profit_share_ratio",
                ratio,
                "R-LEAD-5",
                f"a private futures portfolio's profit share {value} is outside 0 to {MAX_PRIVATE_RATIO}",
            )
        return value
    if value != DEFAULT_RATIO:
        raise RuleViolation(
            "profit_share_ratio",
            ratio,
            "R-LEAD-5",
            f"a {mode} {visibility} portfolio's profit share is fixed at {DEFAULT_RATIO}",
        )
    return DEFAULT_RATIO


def check_ratio_unchanged(current: Decimal, requested: object) -> None:
    """Refuse any change of a portfolio's profit-share ratio after creation (R-LEAD-5)."""
    raise RuleViolation(
        "profit_share_ratio",
        requested,
        "R-LEAD-5",
        f"the profit share ({current}) is fixed at creation and can never be changed",
    )


# -- invitation codes (R-LEAD-4, R-LEAD-6) ----------------------------------------------------


def new_invitation_code(rng: secrets.SystemRandom | None = None) -> str:
    """Return a fresh invitation code: 8 characters, letters and digits mixed, no look-alikes."""
    rng = rng or secrets.SystemRandom()
    alphabet = CODE_ALPHABET_LETTERS + CODE_ALPHABET_DIGITS
    while True:
        code = "".join(rng.choice(alphabet) for _ in range(CODE_LENGTH))
        if any(c.isdigit() for c in code) and any(c.isalpha() for c in code):
            return code


def normalise_code(code: str) -> str:
    """Return a typed invitation code without separators, in upper case (what is compared)."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", code) if ch.isalnum()).upper()


_ALNUM_RUN = re.compile(r"[A-Za-z0-9]+")
# Chunks glued by separators that people use to dodge filters: "AB12-CD34", "K7.Q2.M9", "ab_12_cd".
_GLUED = re.compile(r"[A-Za-z0-9]+(?:\s*[-._/:|·•*+]\s*[A-Za-z0-9]+)+")
# Words of at most 4 letters/digits spaced apart, candidates for "K 7 Q 2 M 9" or "AB12 CD34 EF".
_SPACED_RUN = re.compile(r"(?<![^\s])[A-Za-z0-9]{1,4}(?:\s+[A-Za-z0-9]{1,4})+(?![^\s])")


def _code_shaped(candidate: str) -> bool:
    return (
        CODE_SHAPE_MIN <= len(candidate) <= CODE_SHAPE_MAX
        and any(c.isdigit() for c in candidate)
        and any(c.isalpha() for c in candidate)
    )


def find_invitation_code(text: str, own_code: str | None = None) -> str | None:
    """Return the first invitation code (or code-shaped string) in ``text``, else None (R-LEAD-6).

    Code-shaped: 6 to 12 ASCII letters and digits with at least one of each, standing alone
    ("K7Q2M9XA"), glued by separators ("K7Q2-M9XA", "k7.q2.m9.xa") or spelt out in short spaced
    chunks ("K7 Q2 M9 XA", "K 7 Q 2 M 9"). The portfolio's own code is found in any spelling,
    whatever separators or case are put between its characters. Text is NFKC-normalised first, so
    full-width and other compatibility forms count as the letters they stand for.
    """
    normal = unicodedata.normalize("NFKC", text or "")
    if own_code:
        squashed = "".join(ch for ch in normal if ch.isalnum()).upper()
        if normalise_code(own_code) and normalise_code(own_code) in squashed:
            return own_code
    for pattern in (_ALNUM_RUN, _GLUED):
        for match in pattern.finditer(normal):
            candidate = re.sub(r"[^A-Za-z0-9]", "", match.group(0))
            if _code_shaped(candidate):
                return match.group(0)
    for match in _SPACED_RUN.finditer(normal):
        found = _spaced_code(match.group(0).split())
        if found:
            return found
    return None


def _mixed(word: str) -> bool:
    return any(c.isdigit() for c in word) and any(c.isalpha() for c in word)


def _spaced_code(words: list[str]) -> str | None:
    """Return a code spelt out in spaced chunks, if any window of ``words`` is one.

    A window counts when its letters and digits together are code-shaped and it is either at
    least four chunks of one or two characters ("K7 Q2 M9 XA", "K 7 Q 2 M 9") or holds at least
    two chunks of three or four characters that mix letters and digits ("AB12 CD34"). Ordinary
    prose ("I am 25 and use 2x") has neither.
    """
    for start in range(len(words)):
        for end in range(start + 2, len(words) + 1):
            window = words[start:end]
            joined = "".join(window)
            if len(joined) > CODE_SHAPE_MAX:
                break
            if not _code_shaped(joined):
                continue
            short = len(window) >= 4 and all(len(w) <= 2 for w in window)
            if short or sum(1 for w in window if len(w) >= 3 and _mixed(w)) >= 2:
                return " ".join(window)
    return None


def check_no_invitation_code(field: str, text: str, own_code: str | None = None) -> None:
    """Refuse a nickname or description that carries an invitation code (R-LEAD-6)."""
    found = find_invitation_code(text, own_code)
    if found is not None:
        raise RuleViolation(
            field,
            text,
            "R-LEAD-6",
            f"{field} contains {found!r}, which is or looks like an invitation code; a private "
            "portfolio's nickname and description may not carry invitation codes "
            f"(anything of {CODE_SHAPE_MIN}-{CODE_SHAPE_MAX} letters and digits mixed)",
        )


def check_invitation_code(given: str | None, expected: str | None) -> None:
    """Refuse joining a private portfolio without its invitation code (R-COPY-2, R-LEAD-4)."""
    if not given:
        raise RuleViolation(
            "invitation_code",
            given,
            "R-COPY-2",
            "this portfolio is private: an invitation code is required",
        )
    if expected is None or not secrets.compare_digest(
        normalise_code(given), normalise_code(expected)
    ):
        raise RuleViolation(
            "invitation_code",
            given,
            "R-COPY-2",
            "the invitation code does not match this private portfolio",
        )


# -- follower cap and capacity (R-LEAD-7) -----------------------------------------------------


def default_follower_cap(mode: str) -> int:
    """Return the follower cap a new portfolio starts with: spot 300, futures 200 (R-LEAD-7)."""
    return DEFAULT_FOLLOWER_CAP[mode]


def has_free_place(active_followers: int, follower_cap: int) -> bool:
    """Return whether a portfolio with ``active_followers`` can take one more under its cap."""
    return active_followers < follower_cap


def check_free_place(active_followers: int, follower_cap: int) -> None:
    """Refuse a new follower when the portfolio is full (R-LEAD-7, R-COPY-2)."""
    if not has_free_place(active_followers, follower_cap):
        raise RuleViolation(
            "portfolio",
            f"{active_followers}/{follower_cap} followers",
            "R-LEAD-7",
            f"the portfolio is full ({active_followers} of {follower_cap} followers); "
            "its leader may request a capacity increase",
        )


def check_capacity_request(
    current_cap: int, requested_cap: object, max_cap: int = MAX_FOLLOWER_CAP
) -> int:
    """Return the requested cap if it is a whole number above the current cap and at most ``max_cap``."""
    try:
        value = int(str(requested_cap).strip())
    except ValueError:
        raise RuleViolation(
            "requested_cap",
            requested_cap,
            "R-LEAD-7",
            "the requested follower cap must be a whole number",
        ) from None
    if value <= current_cap:
        raise RuleViolation(
            "requested_cap",
            value,
            "R-LEAD-7",
            f"the requested cap {value} must be above the current cap of {current_cap}",
        )
    if value > max_cap:
        raise RuleViolation(
            "requested_cap",
            value,
            "R-LEAD-7",
            f"the requested cap {value} is above the maximum of {max_cap}",
        )
    return value


def check_capacity_decision(status: str) -> None:
    """Refuse deciding a capacity request that was already decided (R-LEAD-7)."""
    if status != "pending":
        raise RuleViolation(
            "request", status, "R-LEAD-7", f"this capacity request was already {status}"
        )


# -- leverage cap (R-LEAD-8) ------------------------------------------------------------------


def portfolio_aum(
    leader_capital: Decimal, copy_equities: list[Decimal] | tuple[Decimal, ...]
) -> Decimal:
    """Return assets under management: leader capital plus every active follower's copy equity."""
    return leader_capital + sum(copy_equities, Decimal(0))


def leverage_allowed(aum: Decimal, leverage: int | Decimal) -> bool:
    """Return whether a new futures position may use ``leverage`` at this AUM (R-LEAD-8).

    From 100,000 USD of AUM on, leverage above 5× is refused (for the leader and copied orders).
    """
    if leverage < 1:
        return False
    return aum < LEVERAGE_AUM_THRESHOLD or leverage <= LEVERAGE_CAP_AT_THRESHOLD


def check_leverage(aum: Decimal, leverage: int | Decimal) -> None:
    """Refuse a leverage above 5× for a portfolio whose AUM reached 100,000 USD (R-LEAD-8)."""
    if not leverage_allowed(aum, leverage):
        raise RuleViolation(
            "leverage",
            leverage,
            "R-LEAD-8",
            f"leverage {leverage}x is above {LEVERAGE_CAP_AT_THRESHOLD}x while the portfolio's AUM "
            f"({aum} USD) is at or above {LEVERAGE_AUM_THRESHOLD} USD",
        )


# -- impersonation (R-LEAD-9) -----------------------------------------------------------------


def is_advanced(follower_count: int) -> bool:
    """Return whether a leader with ``follower_count`` active followers is advanced (more than 200)."""
    return follower_count > ADVANCED_FOLLOWERS


# Look-alikes that Unicode's confusables table does not fold together, applied after case-folding.
_LOOKALIKE = str.maketrans(
    {
        "0": "o",
        "1": "l",
        "i": "l",
        "|": "l",
        "2": "z",
        "3": "e",
        "4": "a",
        "5": "s",
        "$": "s",
        "7": "t",
        "8": "b",
        "9": "g",
        "@": "a",
    }
)
_SEQUENCES = (("rn", "m"), ("vv", "w"))


@lru_cache(maxsize=1)
def _prototypes() -> dict[str, str]:
    """Map each confusable character to its prototype (Unicode confusables.txt, UTS #39).

    ``confusable_homoglyphs`` stores the table both ways (source ↔ prototype). A prototype is the
    side with more than one partner (several sources map to it) or a multi-character target;
    isolated pairs are folded onto the smaller code point. Only the equivalence matters here.
    """
    from confusable_homoglyphs import confusables

    data = confusables.confusables_data

    def clean(s: str) -> str:
        return s.replace("\u200e", "").replace("\u200f", "")

    partners: dict[str, set[str]] = {}
    for key, entries in data.items():
        k = clean(key)
        for entry in entries:
            partners.setdefault(k, set()).add(clean(entry["c"]))
    mapping: dict[str, str] = {}
    for source, targets in partners.items():
        if len(source) != 1 or len(targets) != 1:
            continue  # multi-character keys and hubs with many partners are prototypes
        (target,) = targets
        if _is_latin(source) and not target.isascii():
            continue  # Latin letters stay themselves unless they fold onto ASCII
        if len(target) > 1 or len(partners.get(target, ())) > 1 or target < source:
            mapping[source] = target
    return mapping


def _is_latin(ch: str) -> bool:
    return ch.isascii() or unicodedata.name(ch, "").startswith("LATIN")


def _strip_marks(text: str) -> str:
    return "".join(
        ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch)
    )


def skeleton(name: str) -> str:
    """Return the comparison key of a nickname for impersonation (R-LEAD-9).

    Steps: NFKC; strip accents; map every character to its Unicode confusables prototype;
    case-fold; strip accents; map again (case-folding can expose new confusables); drop everything that is not a
    letter or digit (whitespace, punctuation, separators, symbols, invisible characters); then
    fold the look-alikes Unicode leaves apart (0/o, 1/l/i, 2/z, 3/e, 4/a, 5/s, 7/t, 8/b, 9/g,
    "rn"/m, "vv"/w).
    """
    protos = _prototypes()
    text = _strip_marks(unicodedata.normalize("NFKC", name or ""))
    for _ in range(2):
        text = _strip_marks("".join(protos.get(ch, ch) for ch in text).casefold())
    text = text.translate(_LOOKALIKE)
    text = "".join(ch for ch in text if ch.isalnum())
    text = text.translate(_LOOKALIKE)
    for seq, single in _SEQUENCES:
        text = text.replace(seq, single)
    return text


def imitates(nickname: str, other: str) -> bool:
    """Return whether ``nickname`` imitates ``other``: the same after every folding of ``skeleton``.

    Identical nicknames imitate each other too; callers exclude the leader's own listings.
    """
    a, b = skeleton(nickname), skeleton(other)
    return bool(a) and a == b


# -- closing (R-LEAD-10) ----------------------------------------------------------------------


def check_can_close(status: str) -> None:
    """Refuse closing a portfolio that is not active (R-LEAD-10)."""
    if status != "active":
        raise RuleViolation("portfolio", status, "R-LEAD-10", f"the portfolio is already {status}")
