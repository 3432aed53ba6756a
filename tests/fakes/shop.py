"""The `fakes` fixture: the suite's shop cluster and control plane, for the approvals tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from tests.fakes.control_plane import ControlPlaneFake
from tests.fakes.control_plane import load_shop_scenario as load_cp_scenario
from tests.fakes.kube import KubeFake, load_shop_scenario


@dataclass
class Fakes:
    kube: KubeFake
    cp: ControlPlaneFake

    def backends(self) -> dict[str, str]:
        """The environment that points srebot's Kubernetes and control-plane tools at the fakes."""
        return {
            "KUBECONFIG": self.kube.kubeconfig_path,
            "SREBOT_KUBE_CONTEXT": self.kube.context,
            "CONTROL_PLANE_URL": self.cp.url,
            "CONTROL_PLANE_TOKEN_URL": self.cp.token_url,
            "CONTROL_PLANE_CLIENT_ID": self.cp.client_id,
            "CONTROL_PLANE_CLIENT_SECRET": self.cp.client_secret,
        }

    def env(self, db_url: str, **extra: str) -> dict[str, str]:
        return {"DATABASE_URL": db_url, **self.backends(), "SREBOT_APPROVERS": "bob", "SREBOT_TEAMS": "false",
                **extra}


@pytest.fixture
async def fakes() -> AsyncIterator[Fakes]:
    """The suite's shop cluster and control plane (shop/checkout mid bad rollout, INC-101 open)."""
    async with KubeFake() as kube, ControlPlaneFake() as cp:
        load_shop_scenario(kube)
        load_cp_scenario(cp)
        yield Fakes(kube, cp)
