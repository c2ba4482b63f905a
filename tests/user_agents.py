"""User-Agent strings as real clients send them, for tests that act as a person or as a machine."""

from __future__ import annotations

BROWSER = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Mobile/15E148 Safari/604.1"
)
"""Safari on an iPhone: a person."""
