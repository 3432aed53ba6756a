"""The failure catalogue: every module of this package that declares a `RULE` is a cause family. Adding a failure
mode is adding a module; the order causes are weighed in is each rule's `rank` (data), not code."""
from __future__ import annotations

import importlib
import logging
import pkgutil

from bot.answer import SEVERITY_RANK
from bot.engine.causes.base import Rule, Verdict, World, explains


def _load() -> list[Rule]:
    rules = []
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        rule = getattr(module, "RULE", None)
        if isinstance(rule, Rule):
            rules.append(rule)
    return sorted(rules, key=lambda r: (r.rank, r.family))


log = logging.getLogger("srebot.engine")
CATALOGUE: list[Rule] = _load()
RANK: dict[str, int] = {rule.family: rule.rank for rule in CATALOGUE}
EXPLAINS: dict[str, tuple[str, ...]] = {rule.family: rule.explains for rule in CATALOGUE}


def mechanisms(current: list[Verdict]) -> list[tuple[Verdict, Verdict]]:
    """(symptom, mechanism) for each current verdict that shows what another current one explains — a probe timing out
    and the throttled CPU or the slow dependency that makes the process slow, a crash and the rule that reads its last
    line. The mechanism is the most severe and nearest the root of those; it takes the symptom's severity, so that it
    leads and the symptom is said as its consequence."""
    out = []
    for symptom in current:
        candidates = [m for m in current if m is not symptom and m.family != symptom.family
                      and m.severity in ("critical", "warning") and symptom.shows & explains(m, EXPLAINS.get(m.family, ()))
                      and not m.shows & explains(symptom, EXPLAINS.get(symptom.family, ()))]
        if candidates:
            mechanism = min(candidates, key=lambda m: (SEVERITY_RANK[m.severity], RANK.get(m.family, 50)))
            mechanism.severity = min(mechanism.severity, symptom.severity, key=SEVERITY_RANK.__getitem__)
            out.append((symptom, mechanism))
    return out


def detect(world: World) -> list[Verdict]:
    """Every rule's verdicts on `world`; a rule that breaks on odd data is skipped, never the diagnosis."""
    out: list[Verdict] = []
    for rule in CATALOGUE:
        try:
            found = rule.detect(world)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            log.warning("cause rule failed on this world", extra={"rule": rule.family}, exc_info=True)
            continue
        unaffected = world.unaffected(rule.impact) if found else []
        for verdict in found:
            if unaffected and verdict.current and verdict.severity != "critical":
                # severity follows user impact, not the measurement: users feel this family only through
                # `rule.impact`, and those signals are healthy (a critical verdict is a failure or a limit reached
                # — writes failing, a volume out of space — and stays one)
                verdict.severity, verdict.service_ok, verdict.unaffected = "info", True, unaffected
        out += found
    return out


__all__ = ["CATALOGUE", "EXPLAINS", "RANK", "Rule", "Verdict", "World", "detect", "mechanisms"]
