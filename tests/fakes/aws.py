"""moto's threaded server as a stand-in for AWS, with helpers for Cost Explorer.

moto does not track cost: `get_cost_and_usage` answers from a queue of results given to
`/moto-api/static/ce/cost-and-usage-results`. The first request with a given body takes the next
queued result and keeps it; a request with another body takes the one after; with the queue empty
the answer is empty. `get_cost_forecast` is not implemented (HTTP 500).

Fixtures `moto_server` (one per session) and `aws` (reset around each test), registered by tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    import boto3

ACCESS_KEY = "testing"
SECRET_KEY = "testing"


class MotoServer:
    """One moto server on 127.0.0.1 (random port)."""

    def __init__(self) -> None:
        # moto and boto3 are imported here, not at the top: this plugin is loaded by every run, the unit tier never
        # starts the server, and they cost each test worker a second
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.url = ""

    def start(self) -> MotoServer:
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.stop()

    def session(self, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY) -> boto3.session.Session:
        """A boto3 session with explicit (fake) credentials, so nothing is read from the environment."""
        import boto3

        return boto3.session.Session(
            aws_access_key_id=access_key, aws_secret_access_key=secret_key, region_name="us-east-1"
        )

    def reset(self) -> None:
        """Forget all state (queued cost results included) and stop enforcing IAM."""
        httpx.post(f"{self.url}/moto-api/reset").raise_for_status()
        httpx.post(f"{self.url}/moto-api/reset-auth", content=b"inf").raise_for_status()

    def queue_cost_and_usage(self, *results: Mapping[str, Any]) -> None:
        """Queue get_cost_and_usage answers, in the order distinct requests will take them."""
        httpx.post(
            f"{self.url}/moto-api/static/ce/cost-and-usage-results", json={"results": list(results)}
        ).raise_for_status()

    def session_without_permissions(self) -> boto3.session.Session:
        """Credentials of an IAM user with no policy; from now on moto enforces IAM, so every call is AccessDenied."""
        admin = self.session()
        # two unauthenticated actions (create user, create key), then enforcement starts
        httpx.post(f"{self.url}/moto-api/reset-auth", content=b"2").raise_for_status()
        iam = admin.client("iam", endpoint_url=self.url)
        iam.create_user(UserName="srebot")
        key = iam.create_access_key(UserName="srebot")["AccessKey"]
        return self.session(key["AccessKeyId"], key["SecretAccessKey"])


def cost_and_usage(
    first_day: date, days: list[Mapping[str, float]], *, tag_key: str | None = None, next_page_token: str | None = None
) -> dict[str, Any]:
    """A DAILY get_cost_and_usage answer: one row per day from `first_day`, one group per key of that
    day's mapping (a service name, or a tag value when `tag_key` is given: "" is untagged)."""
    rows = []
    for offset, groups in enumerate(days):
        day = first_day + timedelta(days=offset)
        rows.append(
            {
                "TimePeriod": {"Start": day.isoformat(), "End": (day + timedelta(days=1)).isoformat()},
                "Total": {},
                "Groups": [
                    {
                        "Keys": [f"{tag_key}${name}" if tag_key else name],
                        "Metrics": {"UnblendedCost": {"Amount": f"{amount:.10f}", "Unit": "USD"}},
                    }
                    for name, amount in groups.items()
                ],
                "Estimated": offset == len(days) - 1,
            }
        )
    result: dict[str, Any] = {"GroupDefinitions": [], "ResultsByTime": rows, "DimensionValueAttributes": []}
    if next_page_token:
        result["NextPageToken"] = next_page_token
    return result


def daily_totals(first_day: date, amounts: list[float]) -> dict[str, Any]:
    """An ungrouped DAILY get_cost_and_usage answer (what a filtered or total query returns)."""
    rows = [
        {
            "TimePeriod": {
                "Start": (first_day + timedelta(days=i)).isoformat(),
                "End": (first_day + timedelta(days=i + 1)).isoformat(),
            },
            "Total": {"UnblendedCost": {"Amount": f"{amount:.10f}", "Unit": "USD"}},
            "Groups": [],
            "Estimated": False,
        }
        for i, amount in enumerate(amounts)
    ]
    return {"ResultsByTime": rows, "DimensionValueAttributes": []}


@pytest.fixture(scope="session", name="moto_server")
def moto_server_fixture() -> Iterator[MotoServer]:
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture(name="aws")
def aws_fixture(moto_server: MotoServer) -> Iterator[MotoServer]:
    """The shared moto server, reset before and after the test."""
    moto_server.reset()
    yield moto_server
    moto_server.reset()
