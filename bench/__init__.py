"""``make bench``: cold starts, warm overhead, backlog drain and artifact sizes (issue 7), and an application
against a real EspoCRM (issue 12); docs/performance.md.

Run with ``python -m bench`` (``--quick`` for a minute-long pass). Not part of ``make test``: a unit test
only checks that a tiny configuration still runs (tests/bench).
"""
