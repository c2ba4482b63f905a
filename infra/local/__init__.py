"""The local runner: the whole system on loopback, without AWS or Docker (``make run``)."""
