"""A TLS certificate that fails verification: expired (Go's "x509: certificate has expired … current time X is
after Y", OpenSSL's CERTIFICATE_VERIFY_FAILED, Java's PKIX errors), signed by an authority the caller does not
trust, or issued for another name. Every call to that host fails the handshake, whatever the caller does: the fix
is a valid certificate on the server (renewed by us, or by the partner who runs it), never a restart or a rollback
of the caller, which meets the same certificate again."""
from __future__ import annotations

import re
from datetime import datetime

from bot.engine.causes.base import ERRORS, Plan, Rule, Verdict, World, name, short, when
from bot.engine.causes.dependency import NOT_HOSTS, TARGETS

CERT_ERROR = re.compile(
    r"(?i)x509:|certificate verify failed|CERTIFICATE_VERIFY_FAILED|SSLCertVerificationError|"
    r"tls: failed to verify certificate|certificate has expired|certificate expired|CERT_HAS_EXPIRED|"
    r"PKIX path (?:building|validation) failed|unable to get local issuer certificate|"
    r"self[- ]signed certificate|certificate signed by unknown authority|certificate is not valid for|"
    r"Hostname/IP does not match certificate")
# what is wrong with the certificate, most specific first: (kind, pattern)
KINDS = (
    ("expired", re.compile(r"(?i)has expired|certificate expired|CERT_HAS_EXPIRED|is after \S+|NotAfter")),
    ("not yet valid", re.compile(r"(?i)not yet valid: current time \S+ is before")),
    ("untrusted", re.compile(r"(?i)unknown authority|unable to get local issuer|self[- ]signed|PKIX path|"
                             r"unable to find valid certification path")),
    ("wrong name", re.compile(r"(?i)is (?:only )?valid for|not valid for|does not match certificate|"
                              r"hostname mismatch|doesn't match")),
)
EXPIRED_AT = re.compile(r"(?i)is after (\S+?)[,;)]?(?:\s|$)")
# Python's requests/urllib3 name the host this way
POOL_HOST = re.compile(r"HTTPSConnectionPool\(host='(?P<host>[\w.-]+)'(?:, port=(?P<port>\d+))?")


def _host(world: World, line: str) -> str | None:
    found = POOL_HOST.search(line)
    if found:
        return found.group("host")
    for pattern in TARGETS[:2]:  # a URL, then 'connecting to host'
        for m in pattern.finditer(line):
            host = (m.groupdict().get("host") or "").rstrip(".")
            if host and host.lower() not in NOT_HOSTS and host.lower() != world.service.lower():
                return host
    return None


def _ours(world: World, host: str) -> bool:
    """A host the cluster or the catalog knows is ours to fix; any other is run by someone else."""
    services = {name(s) for s in world.snap.items("services")} if world.snap else set()
    first = host.split(".")[0]
    return first in services | world.known or ".svc" in host or host.endswith(".cluster.local")


def detect(world: World) -> list[Verdict]:
    lines = world.find_lines(CERT_ERROR)
    if not lines:
        return []
    texts = [line for _, line, _ in lines]
    kind = next((k for k, pattern in KINDS if any(pattern.search(t) for t in texts)), "failing verification")
    hosts = [h for h in (_host(world, t) for t in texts) if h]
    host = max(set(hosts), key=hosts.count) if hosts else None
    expired: datetime | None = max((d for t in texts for m in [EXPIRED_AT.search(t)] if m for d in [when(m.group(1))]
                                    if d is not None), default=None)
    where, line, _ = next(((w, t, m) for w, t, m in lines if host is None or host in t), lines[0])
    server = f"the certificate of {host}" if host else "a server's TLS certificate"
    since = ""
    if kind == "expired" and expired is not None:
        age = world.ago(expired)
        minutes = int(age.total_seconds() // 60) if age is not None else None
        since = f" at {expired:%H:%M} UTC" + (f" ({minutes} min ago)" if minutes is not None and 0 <= minutes < 120
                                             else "")
    what = {"expired": f"expired{since}", "not yet valid": "not valid yet (its notBefore is in the future, or a "
                                                           "clock is wrong)",
            "untrusted": "signed by an authority the caller does not trust",
            "wrong name": "issued for another name"}.get(kind, "failing verification")
    ours = host is not None and _ours(world, host)
    calls = [s for s in (world.signals.get("error_rate"),) if s is not None and s.health in ("warning", "critical")]
    severity = "critical" if any(s.health == "critical" for s in calls) or not world.calls_healthy() else "warning"
    if kind == "expired" and host is None:
        fix = ("Renew the expired certificate of the server these calls go to (whoever runs it: the URL in the failing "
               "lines says which)")
    elif kind == "expired":
        fix = (f"Renew the certificate of {host} and reload it where it is served (cert-manager: check the "
               "Certificate, its Issuer and the renewal's events)" if ours else
               f"{host or 'The server'} is not ours: its owner (the partner or provider) must renew its certificate "
               "— escalate to them; meanwhile hold or queue the calls that need it")
    elif kind == "untrusted":
        fix = (f"Make {world.service} trust the CA that signed {host or 'the server'}'s certificate (its CA bundle "
               "or truststore), or have the server send its full chain")
    elif kind == "wrong name":
        fix = f"Call {host or 'the server'} by a name its certificate covers, or reissue the certificate with that name"
    else:
        fix = f"Install a valid certificate on {host or 'the server'}"
    evidence = [f"log ({where}): {short(line, 300)}", f"{len(lines)} log line(s) with TLS verification errors"]
    evidence += [f"metric {s.query}: {s.value:.3g} ({s.health})" for s in calls if s.value is not None]
    return [Verdict(
        family="tls_certificate",
        cause=f"{server}, {what}: every TLS handshake with it fails verification",
        title=f"TLS certificate of {host or 'a server it calls'} {what}: calls fail certificate verification "
              f"({len(lines)} log line(s))",
        evidence=evidence,
        severity=severity,
        ruled_out=[r for r in (world.pods_fine(),) if r] + [
            ("Restart or rollback", f"the certificate is {'served by ' + host if host else 'the server’s'}: a "
                                    f"restarted or rolled-back {world.service} meets the same certificate")],
        plans=[Plan(fix + f"; restarting or rolling back {world.service} cannot help")],
        sources={"logs"} | ({"metrics"} if calls else set()),
        subjects={host} if host else set(),
    )]


RULE = Rule("tls_certificate", 54, ("logs", "services", "error rate"), detect,
            "TLS certificate failing verification: expired (since when), untrusted CA, wrong name — whose it is "
            "(ours or a partner's)", explains=(ERRORS,))
