"""A Service of type LoadBalancer whose load balancer never appeared: `status.loadBalancer.ingress` stays empty
(EXTERNAL-IP <pending>) and the cloud controller's events on the Service say why (SyncLoadBalancerFailed). The pods
may be perfectly fine: outside callers simply have no address to reach them."""
from __future__ import annotations

import re
from datetime import timedelta

from bot.engine.causes.base import (Obj, Plan, Rule, Verdict, World, event_text, event_time, meta, name, selects,
                                    short, when)
from bot.engine.text import duration

# A cloud load balancer usually appears within a minute or two; pending longer than this, with no failure said, is
# worth a look too.
SLOW_TO_APPEAR = timedelta(minutes=5)

# What the cloud controller's failure message says → what fixes it. The first that matches wins.
FIXES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)subnet"),
     "Tag the subnets the load balancer should use so the cloud controller can find them: public subnets "
     "`kubernetes.io/role/elb=1` (internal: `kubernetes.io/role/internal-elb=1`) and "
     "`kubernetes.io/cluster/<cluster-name>=shared` (or `owned`), or name them in the Service's "
     "`service.beta.kubernetes.io/aws-load-balancer-subnets` annotation"),
    (re.compile(r"(?i)quota|limit ?exceeded|TooMany|exceeded .*limit"),
     "Raise the cloud account's load-balancer (or address) quota, or delete unused load balancers"),
    (re.compile(r"(?i)unauthori[sz]ed|access ?denied|forbidden|not authori[sz]ed|permission"),
     "Grant the cloud controller's role (IAM) the load-balancer permissions the message names"),
    (re.compile(r"(?i)certificate|\bcert\b|acm"),
     "Fix the certificate the Service's annotations name (it must exist in the load balancer's region)"),
    (re.compile(r"(?i)security ?group"),
     "Fix the security groups the Service's annotations name (or the cluster's tagged security group)"),
)


def _events(world: World, service: Obj) -> list[Obj]:
    snap = world.snap
    out = [e for e in (snap.events if snap else [])
           if (e.get("involvedObject") or {}).get("kind") == "Service"
           and (e.get("involvedObject") or {}).get("name") == name(service)]
    return sorted(out, key=lambda e: str(event_time(e) or ""), reverse=True)


def _services(world: World) -> list[Obj]:
    """Services of type LoadBalancer in front of the workload (or named as it is) that have no address."""
    pods = world.pods()
    out = []
    for service in world.snap.items("services") if world.snap else []:
        spec = service.get("spec") or {}
        if spec.get("type") != "LoadBalancer" or ((service.get("status") or {}).get("loadBalancer") or {}).get(
                "ingress"):
            continue
        selector = spec.get("selector")
        fronts = bool(selector) and bool(pods) and all(
            selects({"matchLabels": selector}, meta(p).get("labels") or {}) for p in pods)
        if fronts or name(service) == world.service:
            out.append(service)
    return out


def detect(world: World) -> list[Verdict]:
    out = []
    for service in _services(world):
        created = when(meta(service).get("creationTimestamp"))
        age = world.ago(created)
        events = _events(world, service)
        failed = [e for e in events if e.get("reason") == "SyncLoadBalancerFailed" or (
            e.get("type") == "Warning" and "load balancer" in (e.get("message") or "").lower())]
        if not failed and (age is None or age < SLOW_TO_APPEAR):
            continue  # still being created, and nothing says it fails
        pending = f" for {duration(age)}" if age is not None else ""
        evidence = [f"service {name(service)}: spec.type LoadBalancer, status.loadBalancer {{}} (no ingress "
                    f"address){pending}"]
        plans = []
        if failed:
            message = str(failed[0].get("message") or "")
            evidence.insert(0, short(event_text(failed[0]), 300))
            fix = next((text for pattern, text in FIXES if pattern.search(message)),
                       f"Fix what the cloud controller reports on Service {name(service)} ({short(message, 120)})")
            plans.append(Plan(f"{fix}; the controller retries by itself once it is fixed, no restart or "
                              "re-creation needed"))
        else:
            evidence.append(f"events of service {name(service)}: none says why (no controller seems to act on it)")
            class_ = (service.get("spec") or {}).get("loadBalancerClass")
            plans.append(Plan("Check that a load-balancer controller runs for this Service (the cloud controller "
                              "manager" + (f", or the one for loadBalancerClass {class_}" if class_ else "")
                              + ") and read its logs; on a cluster without one (bare metal, kind), install one "
                                "such as MetalLB or use a NodePort/Ingress"))
        annotations = {k: v for k, v in (meta(service).get("annotations") or {}).items() if "load-balancer" in k}
        if annotations:
            evidence.append(f"service {name(service)}: annotations " + ", ".join(f"{k}={v}"
                                                                                 for k, v in annotations.items()))
        pods = world.pods()
        fine = bool(pods) and world.pods_fine() is not None
        out.append(Verdict(
            family="load_balancer",
            cause=f"the load balancer of Service {name(service)} never being provisioned",
            title=f"Load balancer of Service {name(service)} not provisioned{pending}: no external address "
                  "(EXTERNAL-IP <pending>)",
            evidence=evidence,
            severity="warning",
            ruled_out=[(f"The pods ({len(pods)}/{len(pods)} running and ready)", "they serve; outside callers have "
                        "no address to reach them")] if fine else [],
            plans=plans,
            subjects={name(service)},
        ))
    return out


RULE = Rule("load_balancer", 23, ("services (type, status.loadBalancer)", "events of the Service"), detect,
            "Service of type LoadBalancer with no address: the cloud controller's SyncLoadBalancerFailed message "
            "(subnets, quota, permissions, certificate) and what fixes it; or no controller acting on it")
