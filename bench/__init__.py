"""``make bench``: cold starts, warm overhead, backlog drain and artifact sizes (issue 7, docs/performance.md).

Run with ``python -m bench`` (``--quick`` for a minute-long pass). Not part of ``make test``: a unit test
only checks that a tiny configuration still runs (tests/bench).
"""
