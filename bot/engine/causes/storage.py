"""PersistentVolumeClaims that do not bind: a StorageClass that does not exist, provisioning that fails, no
matching PersistentVolume."""
from __future__ import annotations

import re

from bot.engine.causes.base import Plan, Rule, Verdict, World, event_text, name, short

CLASS_MISSING = re.compile(r'storageclass[\w.]*\s+"([^"]+)"\s+not found', re.IGNORECASE)


def detect(world: World) -> list[Verdict]:
    snap = world.snap
    if snap is None or not snap.described("persistentvolumeclaims"):
        return []
    wanted = {k_n[1] for k_n in world.involved() if k_n[0] == "PersistentVolumeClaim"}
    claims = [c for c in snap.items("persistentvolumeclaims") if name(c) in wanted]
    out = []
    for claim in claims:
        phase = (claim.get("status") or {}).get("phase")
        if phase == "Bound":
            continue
        cls = (claim.get("spec") or {}).get("storageClassName")
        events = [e for e in snap.events if (e.get("involvedObject") or {}).get("name") == name(claim)
                  and (e.get("involvedObject") or {}).get("kind") == "PersistentVolumeClaim"]
        evidence = [f"persistentvolumeclaim {name(claim)}: status.phase {phase}, spec.storageClassName {cls}"]
        evidence += [short(event_text(e), 300) for e in events[:2]]
        classes = {name(s) for s in snap.items("storageclasses")} if snap.described("storageclasses") else None
        missing = cls is not None and classes is not None and cls not in classes or any(
            CLASS_MISSING.search(e.get("message") or "") for e in events)
        if missing:
            have = ", ".join(sorted(classes or [])) or "none"
            why = f"its StorageClass {cls} does not exist (the cluster has: {have})"
            fix = f"Point claim {name(claim)} at an existing StorageClass ({have}) or create StorageClass {cls}; " \
                  "a claim's class cannot be edited, so recreate the claim"
        elif events:
            why = f"provisioning fails: {short(events[0].get('message') or '', 200)}"
            fix = f"Fix what the provisioner says for claim {name(claim)}"
        else:
            why = "no PersistentVolume matches it and nothing provisions one"
            fix = f"Create a PersistentVolume that matches claim {name(claim)} or give it a provisioning StorageClass"
        out.append(Verdict(
            family="storage",
            cause=f"the PersistentVolumeClaim {name(claim)} that cannot bind: {why}",
            title=f"PersistentVolumeClaim {name(claim)} is {phase or 'not bound'}: {why}; pods using it stay Pending",
            evidence=evidence,
            severity="critical",
            ruled_out=[("Node capacity", "the pod waits for its volume, not for CPU or memory")],
            plans=[Plan(fix + "; a restart cannot help")],
            subjects={name(claim)},
        ))
    return out


RULE = Rule("storage", 5, ("persistentvolumeclaims", "storageclasses", "persistentvolumes", "events"), detect,
            "PVC not bound: StorageClass missing, ProvisioningFailed, no matching PV")
