"""Loopback stand-ins on 127.0.0.1 of what srebot talks to, shipped for `srebot bench` and `srebot eval` and re-used by the test suite through tests/fakes."""
