"""The platform's rule violations: every refusal names the field, the value and the rule (R-IN-2)."""

from __future__ import annotations


class RuleViolation(ValueError):
    """A request broke a product rule; nothing was changed."""

    def __init__(self, field: str, value: object, rule: str, message: str) -> None:
        self.field = field
        self.value = value
        self.rule = rule
        self.message = message
        super().__init__(f"{field}={value!s}: {message} ({rule})")
