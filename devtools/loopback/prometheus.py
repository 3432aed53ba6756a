"""A loopback Prometheus HTTP API (/api/v1/query, /api/v1/query_range) that answers srebot's golden-signal
queries from per-service signal profiles instead of stored samples.

A profile says what each signal's query evaluates to over time ("error_rate is 0.1 % until 8 minutes ago,
then 8 %"), which is what a scenario author means; a real Prometheus would need raw counters and
histograms to come to the same numbers (the test suite does that, with a real server, in
tests/fakes/prometheus.py). Queries are recognised by rendering the metric templates (the built-in ones
of tools.metrics and the catalog's overrides) for each service with any range window, so the engine's
real PromQL is what is matched; `exact` answers other expressions (free PromQL). Anything else returns
no data, like a series that does not exist.

    fake = PrometheusFake()
    fake.add_service(ref, {"error_rate": [(t0, 0.001), (t1, 0.08)], "request_rate": 100.0})
    await fake.start()  # fake.url
"""

from __future__ import annotations

import asyncio
import math
import re
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from devtools.loopback.serving import QueryCounter, Served, serve
from tools.base import ServiceRef
from tools.metrics import BUILTIN_TEMPLATES

# A profile: a constant, or (from, value) steps in time order (value None: no data from then on).
Profile = float | None | list[tuple[datetime, float | None]]
_WINDOW = "\x00window\x00"


def value_at(profile: Profile, moment: datetime) -> float | None:
    if profile is None or isinstance(profile, (int, float)):
        return None if profile is None else float(profile)
    current: float | None = None
    for start, value in profile:
        if start <= moment:
            current = value
        else:
            break
    return current


class PrometheusFake(Served):
    def __init__(self) -> None:
        self.signals: list[tuple[re.Pattern[str], Profile]] = []
        self.exact: dict[str, Profile] = {}  # a whole expression -> its value, for free PromQL
        self.delay = 0.0  # seconds every query waits (a slow server)
        self.queries: list[str] = []
        self.per_query = QueryCounter()  # requests by method, path and query (devtools.loopback.serving)
        app = web.Application()
        app.router.add_route("*", "/api/v1/query", self._query)
        app.router.add_route("*", "/api/v1/query_range", self._query_range)
        app.router.add_get("/-/ready", self._ready)
        self._app = app
        self.url = ""

    def add_service(self, ref: ServiceRef, profiles: dict[str, Profile]) -> None:
        """Answer the queries of `ref`'s signals (built-in templates and its overrides) from `profiles`."""
        templates = BUILTIN_TEMPLATES | dict(ref.metric_templates)
        for name, profile in profiles.items():
            template = templates.get(name)
            if template is None:
                raise ValueError(f"{ref.name}: no metric template for signal {name!r} (known: {', '.join(templates)})")
            rendered = template.format(
                service=ref.name, namespace=ref.namespace, deployment=ref.deployment, window=_WINDOW
            )
            pattern = re.escape(rendered).replace(re.escape(_WINDOW), r"[0-9]+(?:ms|s|m|h|d|w|y)")
            self.signals.append((re.compile(pattern), profile))

    async def start(self) -> PrometheusFake:
        self._runner, self.url = await serve(self._app)
        return self

    # --- HTTP ------------------------------------------------------------------------------------
    def _profile(self, query: str) -> tuple[bool, Profile]:
        """(known, profile): an unknown query has no series at all."""
        if query in self.exact:
            return True, self.exact[query]
        for pattern, profile in self.signals:
            if pattern.fullmatch(query):
                return True, profile
        return False, None

    async def _params(self, request: web.Request) -> dict[str, str]:
        params = dict(request.query)
        if request.method == "POST":
            params.update({k: str(v) for k, v in (await request.post()).items()})
        self.queries.append(params.get("query", ""))
        self.per_query.add(request.method, request.path, params.items())
        if self.delay:
            await asyncio.sleep(self.delay)
        return params

    async def _query(self, request: web.Request) -> web.Response:
        params = await self._params(request)
        at = float(params["time"]) if params.get("time") else datetime.now(UTC).timestamp()
        known, profile = self._profile(params.get("query", ""))
        value = value_at(profile, datetime.fromtimestamp(at, UTC)) if known else None
        result = [] if value is None or math.isnan(value) else [{"metric": {}, "value": [at, _text(value)]}]
        return _success("vector", result)

    async def _query_range(self, request: web.Request) -> web.Response:
        params = await self._params(request)
        try:
            start, end, step = float(params["start"]), float(params["end"]), _step(params["step"])
        except (KeyError, ValueError):
            return web.json_response(
                {"status": "error", "errorType": "bad_data", "error": "invalid start, end or step"}, status=400
            )
        known, profile = self._profile(params.get("query", ""))
        values = []
        if known:
            t = start
            while t <= end + 1e-6:
                value = value_at(profile, datetime.fromtimestamp(t, UTC))
                if value is not None and not math.isnan(value):
                    values.append([t, _text(value)])
                t += step
        return _success("matrix", [{"metric": {}, "values": values}] if values else [])

    async def _ready(self, request: web.Request) -> web.Response:
        return web.Response(text="Prometheus Server is Ready.\n")


def _text(value: float) -> str:
    return repr(float(value))


def _step(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text)
    if not match:
        raise ValueError(text)
    return float(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[match.group(2)]


def _success(kind: str, result: list[dict[str, Any]]) -> web.Response:
    return web.json_response({"status": "success", "data": {"resultType": kind, "result": result}})
