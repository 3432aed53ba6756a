"""Which service a message is about: the catalog's names and aliases, else a Kubernetes deployment of that
name, else the thread's current service (kept in the database, so follow-ups work after a restart)."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field

from bot.config import ServiceConfig, Settings
from bot.engine.intents import NEEDS_SERVICE, Parsed, parse
from bot.toolbox import service_ref
from tools.base import ServiceRef
from tools.kubernetes import DeploymentRef, Kubernetes

DEPLOYMENTS_TTL = 300.0  # a listing is reused this long...
REFRESH_ON_MISS = 30.0  # ...but a name it does not have refreshes one older than this
MAX_KNOWN = 30


@dataclass
class Target:
    """A resolved service: what the answer calls it and what the tools need."""

    name: str  # what the answer and the session call it ("checkout", or "payments/ledger" when ambiguous)
    config: ServiceConfig  # with namespace, deployment and log selector filled in
    ref: ServiceRef
    source: str  # catalog | kubernetes | unverified

    @property
    def namespace(self) -> str:
        return self.ref.namespace


@dataclass
class Resolution:
    target: Target | None = None
    unknown: str | None = None  # the name the user meant that matches nothing
    ambiguous: list[str] = field(default_factory=list)  # "namespace/name" choices
    from_session: bool = False
    ignored: list[str] = field(default_factory=list)  # words that named nothing, passed over for the session's
    elsewhere: str | None = None  # the namespace the user named, where the service is not


class Resolver:
    def __init__(self, settings: Settings, kubernetes: Kubernetes):
        self.settings = settings
        self.kubernetes = kubernetes
        self._deployments: list[DeploymentRef] | None = None
        self._fetched = 0.0
        self._phrases = self._catalog_phrases()

    # --- no I/O ----------------------------------------------------------------------------------
    def _catalog_phrases(self) -> list[tuple[re.Pattern[str], str]]:
        """Every catalog name and alias as a whole-word pattern, longest first ("cart checkout" before "cart")."""
        phrases = []
        for key, service in self.settings.services.items():
            for phrase in {key, *service.aliases}:
                words = [re.escape(w) for w in phrase.split()]
                if words:
                    pattern = re.compile(r"(?<![\w/-])" + r"[\s_-]+".join(words) + r"(?![\w-])", re.IGNORECASE)
                    phrases.append((pattern, key))
        return sorted(phrases, key=lambda item: -len(item[0].pattern))

    def from_catalog(self, text: str) -> str | None:
        """The catalog service a text names, by name or alias; no I/O."""
        for pattern, key in self._phrases:
            if pattern.search(text):
                return key
        return None

    def names(self) -> set[str]:
        """What a message may name, known without I/O: catalog services, aliases and namespaces, and the workloads
        and namespaces of the last cluster listing."""
        out = {self.settings.defaults.namespace}
        for key, service in self.settings.services.items():
            out |= {key, *service.aliases, *(n for n in (service.namespace, service.deployment) if n)}
        for ref in self._deployments or []:
            out |= {ref.name, ref.namespace}
        return out

    def mentioned(self, parsed: Parsed) -> str | None:
        """Best guess without I/O, for the acknowledgement."""
        return self.from_catalog(parsed.text) or parsed.explicit or (parsed.candidates or [None])[0]

    def catalog_target(self, key: str) -> Target:
        config = self.settings.complete(self.settings.services[key])
        return Target(key, config, service_ref(self.settings, config), "catalog")

    def deployment_target(self, namespace: str, name: str, *, source: str, shown: str | None = None) -> Target:
        config = self.settings.complete(ServiceConfig(name=name, namespace=namespace, deployment=name))
        return Target(shown or name, config, service_ref(self.settings, config), source)

    # --- with the cluster ------------------------------------------------------------------------
    async def parse(self, text: str) -> Parsed:
        """The message's intent, knowing the names it may contain. One read as a topic that needs no service
        (cost, incidents, chat) while it has words that may be names is read again with the cluster's listing,
        in which its topic word may be a namespace or a workload."""
        parsed = parse(text, self.names())
        if parsed.intent in NEEDS_SERVICE or not parsed.candidates or self._deployments is not None:
            return parsed
        await self.deployments()
        return parse(text, self.names())

    async def deployments(self, *, refresh: bool = False) -> list[DeploymentRef] | None:
        """Deployments of every namespace, cached; None when the cluster cannot tell."""
        if not self.kubernetes.configured:
            return None
        age = time.monotonic() - self._fetched
        if self._deployments is not None and age < DEPLOYMENTS_TTL and not (refresh and age > REFRESH_ON_MISS):
            return self._deployments
        result, others = await asyncio.gather(self.kubernetes.list_deployments(), self.kubernetes.list_workloads())
        if not result.ok or result.data is None:
            return self._deployments  # the last good listing, if any
        self._deployments = result.data + (others.data if others.ok and others.data else [])
        self._fetched = time.monotonic()
        return self._deployments

    async def known(self) -> list[str]:
        """Catalog services and discovered deployments, for "known services: …"."""
        names = list(self.settings.services)
        for ref in await self.deployments() or []:
            if ref.name not in names:
                names.append(ref.name)
        return sorted(names, key=str.lower)

    async def _by_name(self, word: str, prefer: str | None = None) -> Resolution | None:
        """A deployment called `word` ("name" or "namespace/name"), in namespace `prefer` when it has one; None
        when there is none."""
        namespace, _, name = word.rpartition("/")
        listing = await self.deployments()
        for attempt in range(2):
            if listing is None:
                return None
            matches = [
                d for d in listing if d.name.lower() == name.lower() and (not namespace or d.namespace == namespace)
            ] or _owners_of_pod(listing, name, namespace)
            if matches or attempt:
                break
            listing = await self.deployments(refresh=True)
        if not matches:
            return None
        default = [d for d in matches if d.namespace == (prefer or self.settings.defaults.namespace)]
        if len(default) == 1 or len({d.namespace for d in matches}) == 1:
            chosen = (default or matches)[0]
            shown = f"{chosen.namespace}/{chosen.name}" if namespace else chosen.name
            return Resolution(self.deployment_target(chosen.namespace, chosen.name, source="kubernetes", shown=shown))
        return Resolution(ambiguous=sorted(f"{d.namespace}/{d.name}" for d in matches))

    async def lookup(self, word: str, prefer: str | None = None) -> Resolution | None:
        """A name or alias of the catalog, else a deployment (in namespace `prefer` when it has one); None when
        neither has it."""
        service = self.settings.service(word)
        if service is not None:
            return Resolution(self.catalog_target(service.name))
        return await self._by_name(word, prefer)

    async def resolve(self, parsed: Parsed, current: str | None) -> Resolution:
        key = self.from_catalog(parsed.text)
        if key is not None:
            return Resolution(self.catalog_target(key))
        words = ([parsed.explicit] if parsed.explicit else []) + [w for w in parsed.candidates if w != parsed.explicit]
        mentioned = parsed.params.get("namespace")
        for word in words:
            found = await self.lookup(word, str(mentioned) if mentioned else None)
            if found is not None:
                if found.target is not None and mentioned and found.target.namespace != mentioned:
                    found.elsewhere = str(mentioned)
                return found
        verifiable = await self.deployments() is not None
        guess = parsed.explicit or (words[0] if words and not current else None)
        if guess is not None:
            if verifiable or self.settings.services:
                return Resolution(unknown=guess)
            # nothing to check a name against: take the user's word for it
            namespace, _, name = guess.rpartition("/")
            return Resolution(
                self.deployment_target(namespace or self.settings.defaults.namespace, name, source="unverified")
            )
        if current:
            resolved = await self.lookup(current)
            if resolved is not None and resolved.target is not None:
                resolved.from_session = True
                resolved.ignored = words
                return resolved
            namespace, _, name = current.rpartition("/")
            target = self.deployment_target(
                namespace or self.settings.defaults.namespace, name, source="unverified", shown=current
            )
            return Resolution(target, from_session=True, ignored=words)
        return Resolution()


def _owners_of_pod(listing: list[DeploymentRef], word: str, namespace: str) -> list[DeploymentRef]:
    """The workload a pod name belongs to ("checkout-7c9f8d6b5d-x2k9p" → checkout): the longest workload name it
    starts with, followed by the generated suffixes."""
    lowered = word.lower()
    found = [d for d in listing if lowered.startswith(d.name.lower() + "-") and (not namespace or d.namespace == namespace)
             and re.fullmatch(r"(?:[a-z0-9]{5,10}-)?[a-z0-9]{5}|\d+", lowered[len(d.name) + 1:])]
    longest = max((len(d.name) for d in found), default=0)
    return [d for d in found if len(d.name) == longest]
