"""The runner's pieces, each against a real moto server on loopback (what ``make run`` uses)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.local.aws import LocalAws


@pytest.fixture(scope="module")
def local_aws() -> Iterator[LocalAws]:
    aws = LocalAws()
    aws.start()
    yield aws
    aws.stop()
