"""Development machinery: the loopback world of fake backends, `srebot demo`, `srebot bench` and `srebot eval`.
Not imported by the runtime; the CLI loads it only for the commands that need it."""
