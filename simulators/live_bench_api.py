"""The GraphQL and ``/metrics`` calls of the live-subscription benchmark (:mod:`simulators.live_bench`).

Everything goes through csms's public API, as an operator and drivers would: the admin API key creates
the tariff, the location and the stations and credits the drivers; each driver registers itself and
starts its own charging session. Like the charger simulator, this never imports ``csms``.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

SESSION_FIELDS = "id status energyWh powerW soc costTyiyn updatedAt"
# What a phone's live charging screen subscribes to (the issue's field list).
LIVE_SESSION = f"subscription LiveSession($id: ID!) {{ sessionUpdated(id: $id) {{ {SESSION_FIELDS} }} }}"


class ApiError(Exception):
    """A GraphQL call answered with errors (their ``extensions.code`` are in :attr:`codes`)."""

    def __init__(self, operation: str, errors: list[dict[str, Any]]) -> None:
        self.codes = [str(e.get("extensions", {}).get("code")) for e in errors]
        super().__init__(f"{operation}: {', '.join(self.codes)}: {errors[0].get('message', '')}")


class BenchApi:
    """GraphQL over HTTP against one csms.

    Args:
        http: a client whose ``base_url`` is the csms HTTP address (``http://127.0.0.1:8000``).
        admin_key: an admin API key (``csms apikey create``).
    """

    def __init__(self, http: httpx.AsyncClient, admin_key: str) -> None:
        self.http = http
        self.admin_key = admin_key

    async def call(self, query: str, variables: dict[str, Any], token: str | None) -> dict[str, Any]:
        """Run one operation; its ``data``.

        Raises:
            ApiError: the answer carried errors.
        """
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.http.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        if body.get("errors"):
            raise ApiError(query.split("(")[0].strip(), body["errors"])
        data: dict[str, Any] = body["data"]
        return data

    async def create_tariff(self, name: str, price_per_kwh_tyiyn: int) -> str:
        """An operator tariff; its id."""
        data = await self.call("mutation T($i: CreateTariffInput!) { createTariff(input: $i) { id } }",
                               {"i": {"name": name, "pricePerKwhTyiyn": price_per_kwh_tyiyn}}, self.admin_key)
        return str(data["createTariff"]["id"])

    async def create_location(self, name: str) -> str:
        """An operator location; its id."""
        data = await self.call("mutation L($i: CreateLocationInput!) { createLocation(input: $i) { id } }",
                               {"i": {"name": name, "city": "Bishkek"}}, self.admin_key)
        return str(data["createLocation"]["id"])

    async def create_station(self, station_id: str, location_id: str, tariff_id: str) -> None:
        """A station with one connector at the location, on the tariff."""
        await self.call("mutation S($i: CreateStationInput!) { createStation(input: $i) { id } }",
                        {"i": {"id": station_id, "connectorCount": 1, "locationId": location_id,
                               "tariffId": tariff_id}}, self.admin_key)

    async def register(self, email: str, password: str) -> tuple[str, str]:
        """A new driver account; ``(user id, access token)``."""
        data = await self.call(
            "mutation R($i: RegisterInput!) { register(input: $i) { user { id } accessToken } }",
            {"i": {"email": email, "password": password, "name": "live bench"}}, None)
        return str(data["register"]["user"]["id"]), str(data["register"]["accessToken"])

    async def credit(self, user_id: str, amount_tyiyn: int) -> None:
        """Credit a wallet (admin ``adjustBalance``)."""
        await self.call(
            "mutation A($u: ID!, $a: Long!, $r: String!) { adjustBalance(userId: $u, amountTyiyn: $a, reason: $r) "
            "{ applied } }", {"u": user_id, "a": amount_tyiyn, "r": "live subscription benchmark"}, self.admin_key)

    async def start_charging(self, token: str, station_id: str, limit_tyiyn: int) -> str:
        """``startCharging`` on connector 1 as the driver; the session id."""
        data = await self.call(
            "mutation C($i: StartChargingInput!) { startCharging(input: $i) { id } }",
            {"i": {"stationId": station_id, "connectorId": 1, "limitTyiyn": limit_tyiyn}}, token)
        return str(data["startCharging"]["id"])

    async def stop_charging(self, token: str, session_id: str) -> None:
        """``stopCharging`` as the driver."""
        await self.call("mutation X($s: ID!) { stopCharging(sessionId: $s) { id } }", {"s": session_id}, token)

    async def metrics(self) -> str:
        """The ``/metrics`` page (sent with the admin key, so it also works from another host)."""
        response = await self.http.get("/metrics", headers={"Authorization": f"Bearer {self.admin_key}"})
        if response.status_code == 404:  # a csms without /metrics: the server-side figures are NaN
            return ""
        response.raise_for_status()
        return response.text


@dataclass
class Histogram:
    """One Prometheus histogram read from ``/metrics``: cumulative counts per upper bound (seconds)."""

    bounds: list[float] = field(default_factory=list)
    cumulative: list[int] = field(default_factory=list)

    @property
    def count(self) -> int:
        """Observations in total."""
        return self.cumulative[-1] if self.cumulative else 0

    def minus(self, earlier: Histogram) -> Histogram:
        """What was observed since ``earlier`` (same buckets)."""
        if not earlier.cumulative:
            return self
        return Histogram(list(self.bounds), [a - b for a, b in zip(self.cumulative, earlier.cumulative, strict=True)])

    def quantile(self, q: float) -> float:
        """The ``q`` quantile in seconds, interpolated within its bucket as Prometheus' histogram_quantile does."""
        total = self.count
        if total == 0:
            return math.nan
        rank = q * total
        i = bisect.bisect_left(self.cumulative, rank)
        if i >= len(self.bounds) or math.isinf(self.bounds[i]):
            return self.bounds[-2] if len(self.bounds) > 1 else math.nan  # beyond the last finite bucket
        lower = self.bounds[i - 1] if i > 0 else 0.0
        below = self.cumulative[i - 1] if i > 0 else 0
        inside = self.cumulative[i] - below
        return lower + (self.bounds[i] - lower) * ((rank - below) / inside if inside else 1.0)


def parse_histogram(text: str, name: str) -> Histogram:
    """The buckets of histogram ``name`` in a Prometheus text page (empty if it is not there)."""
    hist = Histogram()
    prefix = f"{name}_bucket{{"
    for line in text.splitlines():
        if not line.startswith(prefix):
            continue
        labels, _, value = line.rpartition(" ")
        le = labels.split('le="', 1)[1].split('"', 1)[0]
        hist.bounds.append(math.inf if le == "+Inf" else float(le))
        hist.cumulative.append(int(float(value)))
    return hist
