"""A full disk: writes fail with "No space left on device" (or the database's own words for it), and the
kubelet's volume stats say which claim is full. The fix is room — expanding the claim when its StorageClass
allows it, or freeing space — never a restart, which comes back to the same full volume."""
from __future__ import annotations

import re

from bot.engine.causes.base import ERRORS, Obj, Plan, Query, Rule, Verdict, World, name, quantity, short

NO_SPACE = re.compile(r"(?i)no space left on device|\bENOSPC\b|disk quota exceeded|database or disk is full|"
                      r"(?:disk|volume|filesystem|file system) (?:is )?full\b|could not extend file|"
                      r"not enough (?:free )?(?:disk )?space")
USAGE = Query(
    "volume_usage",
    'max by (persistentvolumeclaim) (kubelet_volume_stats_used_bytes{{namespace="{namespace}"}} '
    '/ kubelet_volume_stats_capacity_bytes{{namespace="{namespace}"}})',
)
FULL = 0.95  # at this share a write of any size may fail: the filesystem keeps blocks back, logs grow in bursts
NEARLY = 0.85  # kube-prometheus's KubePersistentVolumeFillingUp warns at 15 % left


def _claims(world: World) -> dict[str, Obj]:
    """The claims the workload's pods mount, by name (the object, or {} when claims are not described)."""
    snap = world.snap
    mounted = {n for kind, n in world.involved() if kind == "PersistentVolumeClaim"}
    objects = {name(c): c for c in snap.items("persistentvolumeclaims")} if snap else {}
    return {n: objects.get(n, {}) for n in mounted}


def _usage(world: World, claims: dict[str, Obj]) -> dict[str, float]:
    result = world.metrics.get(USAGE.key)
    out = {}
    for series in result.series if result else []:
        claim = series.labels.get("persistentvolumeclaim", "")
        if series.samples and (claim in claims or not claims):
            out[claim] = series.samples[-1].value
    return out


def _expandable(world: World, claim: Obj) -> bool | None:
    """Whether the claim's StorageClass allows volume expansion; None when that cannot be read."""
    snap = world.snap
    cls = (claim.get("spec") or {}).get("storageClassName")
    if snap is None or cls is None or not snap.described("storageclasses"):
        return None
    found = next((s for s in snap.items("storageclasses") if name(s) == cls), None)
    return None if found is None else bool(found.get("allowVolumeExpansion"))


def _remedy(world: World, claim_name: str | None, claim: Obj) -> str:
    if claim_name is None:
        return ("Free space where the service writes (old logs, temp files, WAL) or give it a larger volume; the "
                "node's disk is not the container's limit, so check which filesystem is full; a restart cannot help")
    size = ((claim.get("status") or {}).get("capacity") or {}).get("storage") or (
        ((claim.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage")
    bigger = f" beyond its {size}" if quantity(size) else ""
    cls = (claim.get("spec") or {}).get("storageClassName")
    expandable = _expandable(world, claim)
    free = f"free space on {claim_name} (old logs, WAL, temp files)"
    if expandable:
        how = (f"Expand claim {claim_name}{bigger} (StorageClass {cls} allows volume expansion: raise "
               f"spec.resources.requests.storage) or {free}")
    elif expandable is False:
        how = f"StorageClass {cls} does not allow expansion: move the data to a larger claim, or {free}"
    else:
        how = f"Expand claim {claim_name}{bigger} if its StorageClass allows it, or {free}"
    return how + "; a restart comes back to the same full volume"


def detect(world: World) -> list[Verdict]:
    claims = _claims(world)
    usage = _usage(world, claims)
    lines = world.find_lines(NO_SPACE)
    full = {c: v for c, v in usage.items() if v >= NEARLY}
    if not lines and not full:
        return []
    evidence = [f"log ({where}): {short(line, 300)}" for where, line, _ in lines[:2]]
    worst = max(full, key=full.__getitem__) if full else None
    if worst is not None:
        evidence.append(f"metric kubelet_volume_stats_used_bytes / capacity_bytes: claim {worst} at "
                        f"{full[worst]:.0%} used")
    claim_name = worst if worst is not None else (next(iter(claims)) if len(claims) == 1 else None)
    claim = claims.get(claim_name, {}) if claim_name else {}
    where = f"volume {claim_name}" if claim_name else "the disk it writes to"
    if lines:
        shown = f" ({full[worst]:.0%} used)" if worst is not None else ""
        cause = f"a full disk: {where}{shown} has no space left, so writes fail"
        title = f"Writes fail with no space left on {where}{shown}: {len(lines)} log line(s)"
        severity = "critical"
    else:
        cause = f"{where} filling up: {full[worst]:.0%} used"  # type: ignore[index]
        title = f"Volume {claim_name} is {full[worst]:.0%} full"  # type: ignore[index]
        severity = "critical" if full[worst] >= FULL else "warning"  # type: ignore[index]
    return [Verdict(
        family="disk_full",
        cause=cause,
        title=title,
        evidence=evidence,
        severity=severity,
        ruled_out=[r for r in (world.pods_fine(),) if r],
        plans=[Plan(_remedy(world, claim_name, claim))],
        sources={"logs"} | ({"metrics"} if worst is not None else set()) | ({"kubernetes"} if claim else set()),
        subjects={claim_name} if claim_name else set(),
    )]


RULE = Rule("disk_full", 28, ("logs", "kubelet volume stats", "persistentvolumeclaims", "storageclasses"), detect,
            "Disk full: \"no space left on device\" in logs, the claim's usage from kubelet volume stats, "
            "expansion if its StorageClass allows", (USAGE,), explains=(ERRORS,),
            impact=("error_rate",))
