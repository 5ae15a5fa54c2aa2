"""The price of charging: the one place where energy and a tariff become money.

Cost = ceil(Wh * price per kWh / 1000) + session fee, in integer tyiyn. Rounding is up, to the next
tyiyn, and happens once on the session's total energy (never per meter reading), so a session's cost
never depends on how often the charger reported.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Price:
    """A tariff as a session sees it: tyiyn per kWh plus a fee per session."""

    per_kwh_tyiyn: int
    session_fee_tyiyn: int = 0


def energy_cost(energy_wh: int, price: Price) -> int:
    """What ``energy_wh`` costs under ``price``, in tyiyn (0 Wh costs just the session fee).

    Raises:
        ValueError: negative energy or price.
    """
    if energy_wh < 0 or price.per_kwh_tyiyn < 0 or price.session_fee_tyiyn < 0:
        raise ValueError("energy and prices are never negative")
    # -(-a // b) is ceil(a / b) in exact integer arithmetic.
    return -(-energy_wh * price.per_kwh_tyiyn // 1000) + price.session_fee_tyiyn


def energy_for_budget(budget_tyiyn: int, price: Price) -> int:
    """The most Wh whose cost stays within ``budget_tyiyn`` (used to stop a session at its limit)."""
    spendable = budget_tyiyn - price.session_fee_tyiyn
    if spendable <= 0:
        return 0
    if price.per_kwh_tyiyn == 0:
        raise ValueError("free energy has no budget limit")
    return spendable * 1000 // price.per_kwh_tyiyn
