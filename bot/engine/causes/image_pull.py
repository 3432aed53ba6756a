"""ImagePullBackOff / ErrImagePull: the image does not exist, or the registry refuses the node's credentials."""
from __future__ import annotations

import re

from bot.engine.causes.base import ERRORS, Plan, Rule, Verdict, World, name, pod_list, short, statuses, waiting

PULL = {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"}
NOT_FOUND = re.compile(r"(?i)not found|manifest unknown|no such (?:image|manifest)|repository does not exist")
UNAUTHORISED = re.compile(r"(?i)unauthori[sz]ed|authentication required|access denied|denied|forbidden|401|403")


def detect(world: World) -> list[Verdict]:
    stuck = [(p, s) for p in world.pods() for s in statuses(p) + statuses(p, init=True)
             if (waiting(s) or {}).get("reason") in PULL]
    if not stuck:
        return []
    pod, status = stuck[0]
    image = status.get("image") or "the image"
    messages = [(waiting(s) or {}).get("message") or "" for _, s in stuck]
    failed = [e.get("message") or "" for e in world.events("Failed") if "image" in (e.get("message") or "").lower()]
    text = " ".join(messages + failed)
    if NOT_FOUND.search(text) and UNAUTHORISED.search(text):
        why = "the repository or tag does not exist, or the registry needs credentials the node does not have"
        fix = (f"Check that {image} exists (repository and tag) and, if the registry is private, that the pods "
               "have an imagePullSecret that can read it")
    elif UNAUTHORISED.search(text):
        why = "the registry refuses the pull: unauthorised (no or wrong imagePullSecret)"
        fix = f"Give the pods an imagePullSecret with read access to {image}'s registry"
    elif NOT_FOUND.search(text):
        why = "the image or tag does not exist in the registry"
        fix = f"Fix the image reference {image}: push the tag or point the workload at one that exists"
    else:
        why = "the node cannot pull it"
        fix = f"Make {image} pullable from the nodes (reference, registry reachability, credentials)"
    evidence = [f"pod {name(pod)} container {status.get('name')}: state.waiting.reason "
                f"{(waiting(status) or {}).get('reason')}: {short((waiting(status) or {}).get('message') or '', 300)}"]
    evidence += [short(f"event Failed: {m}", 300) for m in failed[:1]]
    total = len(world.pods())
    pods = {name(p) for p, _ in stuck}
    return [Verdict(
        family="image_pull",
        cause=f"the image {image} that cannot be pulled ({why})",
        title=f"{len(pods)} of {total} pods cannot pull image {image}: ImagePullBackOff — {why}",
        evidence=evidence,
        severity="critical",
        ruled_out=[("Application crash", "the container never started: its image was never pulled"),
                   ("OOM", "the container never ran")],
        plans=[Plan(fix + "; a restart pulls the same reference and cannot help")],
        subjects=pods | {pod_list([pod])},
    )]


RULE = Rule("image_pull", 20, ("pods", "events"), detect,
            "ImagePullBackOff / ErrImagePull: image or tag not found vs registry unauthorised", explains=(ERRORS,))
