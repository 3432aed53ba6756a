"""Alert-driven investigations (DESIGN 3.9): an alert group becomes one thread, investigated, resolved in place.

Modules:
- `payload`: Alertmanager's webhook payload (version 4), validated, and the source-neutral alert group.
- `routing`: which destination and which service an alert group belongs to (configuration and catalog; no I/O).
- `desk`: what a delivery changes — open the thread, investigate, update, resolve — decided by the database.
- `receiver`: POST /alerts/alertmanager: authenticate, validate, answer at once, hand to the desk.
- `poller`: the control plane's firing alerts fed into the same desk (off by default).
"""
