"""The Kubernetes fake of the test suite: `KubeFake` (devtools.loopback.kube) and the suite's standard cluster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from devtools.loopback.kube import REVISION, TOKEN, KubeFake, PatchRecord, condition, ts

__all__ = ["REVISION", "TOKEN", "KubeFake", "PatchRecord", "load_shop_scenario", "ts"]


def load_shop_scenario(kube: KubeFake, now: datetime | None = None) -> dict[str, Any]:
    """The standard cluster of the test suite.

    - `shop/checkout`: a bad rollout. Revision 7 (shop/checkout:v2.1.0) went out 3 minutes ago;
      its 3 pods crash-loop (CrashLoopBackOff, last termination exit code 1, "Error"). Revision 6
      (shop/checkout:v2.0.3) is scaled to 0 with one old pod still terminating. BackOff and
      Unhealthy warnings on the new pods, an old warning outside a 15-minute window, a Normal
      ScalingReplicaSet event. Previous logs of the first new pod hold a stack trace (and a
      password to redact).
    - `shop/catalog`: healthy, 2/2 ready on revision 3 (shop/catalog:v1.4.2).
    - `payments/ledger`: a deployment whose pods may not be listed (403 on list pods).
    Any other deployment name answers 404. Returns the objects by short names for assertions.
    """
    now = now or datetime.now(UTC)
    rollout = now - timedelta(minutes=3)
    checkout = kube.add_deployment(
        "shop",
        "checkout",
        image="shop/checkout:v2.1.0",
        replicas=3,
        revision=7,
        ready=0,
        updated=3,
        labels={"team": "payments-web", "service": "checkout"},
        conditions=[
            condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                rollout,
            ),
            condition(
                "Progressing", "True", "ReplicaSetUpdated", 'ReplicaSet "checkout-7c9f8d6b5d" is progressing.', rollout
            ),
        ],
    )
    old_rs = kube.add_replicaset(
        checkout,
        revision=6,
        image="shop/checkout:v2.0.3",
        created=now - timedelta(days=6),
        replicas=0,
        pod_template_hash="5b8d7c6f4a",
    )
    new_rs = kube.add_replicaset(
        checkout,
        revision=7,
        image="shop/checkout:v2.1.0",
        created=rollout,
        replicas=3,
        ready=0,
        pod_template_hash="7c9f8d6b5d",
    )
    old_rs["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "FEATURE_NEW_CART", "value": "false"}]
    new_pods = [
        kube.add_pod(
            new_rs,
            name=f"checkout-7c9f8d6b5d-{suffix}",
            created=rollout + timedelta(seconds=5),
            ready=False,
            restarts=4,
            waiting=(
                "CrashLoopBackOff",
                f"back-off 40s restarting failed container=checkout pod=checkout-7c9f8d6b5d-{suffix}",
            ),
            last_terminated={
                "exitCode": 1,
                "reason": "Error",
                "startedAt": ts(now - timedelta(seconds=50)),
                "finishedAt": ts(now - timedelta(seconds=45)),
                "containerID": f"containerd://{suffix}",
            },
        )
        for suffix in ("x2k9p", "m4n7q", "t8w1z")
    ]
    old_pod = kube.add_pod(
        old_rs,
        name="checkout-5b8d7c6f4a-q9r2s",
        created=now - timedelta(days=6),
        ready=True,
        terminating_since=now - timedelta(seconds=20),
    )
    for pod in new_pods:
        kube.add_event(
            pod,
            reason="BackOff",
            message=f"Back-off restarting failed container checkout in pod {pod['metadata']['name']}_shop",
            last_seen=now - timedelta(seconds=30),
            count=9,
        )
    kube.add_event(
        new_pods[0],
        reason="Unhealthy",
        message="Readiness probe failed: HTTP probe failed with statuscode: 503",
        last_seen=now - timedelta(minutes=1),
        count=3,
    )
    kube.add_event(
        checkout,
        reason="ScalingReplicaSet",
        message="Scaled up replica set checkout-7c9f8d6b5d to 3",
        last_seen=rollout,
        type="Normal",
    )
    kube.add_event(
        old_rs, reason="FailedCreate", message="old news: quota exceeded", last_seen=now - timedelta(hours=5), count=2
    )
    kube.set_logs(
        "shop",
        new_pods[0]["metadata"]["name"],
        "2024-05-01T10:00:00Z INFO starting checkout v2.1.0\n"
        "2024-05-01T10:00:01Z INFO connecting to postgres://checkout:s3cr3t-pw@db.shop:5432/checkout\n"
        "2024-05-01T10:00:02Z ERROR panic: nil pointer dereference in cart.Total\n"
        "goroutine 1 [running]:\nmain.main()\n\t/app/main.go:42 +0x1d\n",
        previous=True,
    )
    kube.set_logs("shop", new_pods[0]["metadata"]["name"], "2024-05-01T10:01:00Z INFO starting checkout v2.1.0\n")

    catalog = kube.add_deployment(
        "shop", "catalog", image="shop/catalog:v1.4.2", replicas=2, revision=3, labels={"service": "catalog"}
    )
    catalog_rs = kube.add_replicaset(
        catalog, revision=3, image="shop/catalog:v1.4.2", created=now - timedelta(days=2), replicas=2
    )
    for _ in range(2):
        kube.add_pod(catalog_rs, created=now - timedelta(days=2))

    ledger = kube.add_deployment("payments", "ledger", image="payments/ledger:v9", replicas=1, revision=1)
    kube.add_replicaset(ledger, revision=1, image="payments/ledger:v9", created=now - timedelta(days=9), replicas=1)
    kube.forbid("list", "pods", "payments")
    return {
        "checkout": checkout,
        "old_rs": old_rs,
        "new_rs": new_rs,
        "new_pods": new_pods,
        "old_pod": old_pod,
        "catalog": catalog,
        "ledger": ledger,
    }
