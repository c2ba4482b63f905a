"""The real EspoCRM for a test session: ``real_espocrm`` (a pytest plugin, see tests/conftest.py).

Where it comes from, in order:

1. ``ESPOCRM_URL`` with ``ESPOCRM_ADMIN_PASSWORD`` (and ``ESPOCRM_ADMIN_USER``, default admin): an
   instance you run. It must be a throwaway one: the tests provision it, create leads, change and
   restore fields, and delete the leads they made.
2. Otherwise a local EspoCRM 8.4.2 (infra/espocrm/local.py) from the release tarball, installed once
   per machine, started from its pristine snapshot for this session, stopped at its end.
3. Otherwise the tests that need it are skipped, with a line that says why and how to enable them.
   Where the machine should have it (root, with the tarball: what ``make test`` sets up, and CI),
   a missing EspoCRM is a failure instead: CI must not pass by skipping the real server.

Either way the project's provisioning command prepares it (custom fields, role, API user), as an
operator would, so every session exercises that command on a clean install.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from infra.espocrm.local import (
    EspoCrmSite,
    EspoCrmUnavailable,
    LocalEspoCrm,
    api_user_key,
    default_tarball,
    ensure_installed,
    free_port,
    provision,
    unavailable_reason,
)
from tests.real_crm.espocrm import EspoCrmAdminClient, RealEspoCrmProxy, RealEspoCrmState

# Read at import: the test-wide fixture clears CRM variables from each test's environment.
EXTERNAL_URL = os.environ.get("ESPOCRM_URL")
EXTERNAL_ADMIN_USER = os.environ.get("ESPOCRM_ADMIN_USER", "admin")
EXTERNAL_ADMIN_PASSWORD = os.environ.get("ESPOCRM_ADMIN_PASSWORD")
ROLELESS_USER = "crm-bridge-test-no-role"
WRONG_KEY = "0" * 32
ENABLE = (
    "to run them: as root, `make system-packages` (Debian's PHP 8.2 and MariaDB) with shared/espocrm's "
    "tarball beside the repository; or ESPOCRM_URL + ESPOCRM_ADMIN_PASSWORD of a throwaway EspoCRM"
)


@dataclass(frozen=True)
class RealEspoCrm:
    """A provisioned EspoCRM: where it is, the API user's key, and the local processes if ours."""

    site: EspoCrmSite
    api_key: str
    roleless_key: str
    local: LocalEspoCrm | None

    def proxy(self, *, client_timeout_seconds: float = 0.5, seed: int = 0) -> RealEspoCrmProxy:
        """A fault proxy in front of the server, started (stop it when done)."""
        proxy = RealEspoCrmProxy(free_port(), self.site.url, seed=seed, client_timeout_seconds=client_timeout_seconds)
        proxy.start()
        return proxy

    def state(self, proxy: RealEspoCrmProxy) -> RealEspoCrmState:
        return RealEspoCrmState(self.site, proxy, wrong_key=WRONG_KEY, roleless_key=self.roleless_key)

    def admin(self) -> EspoCrmAdminClient:
        return EspoCrmAdminClient(self.site)


def _must_run_here() -> bool:
    return os.geteuid() == 0 and default_tarball().is_file()


def _unavailable(reason: str) -> None:
    message = f"no real EspoCRM: {reason}"
    if _must_run_here():
        pytest.fail(message, pytrace=False)
    pytest.skip(f"{message}; {ENABLE}")


def _roleless_key(site: EspoCrmSite) -> str:
    """An API user with no role: the server's own 403 for a key that may not touch leads."""
    admin = EspoCrmAdminClient(site)
    try:
        found = admin.request("GET", "User", params={"select": "id", **_user_named(ROLELESS_USER)})
        if not found["list"]:
            admin.request("POST", "User", json={"userName": ROLELESS_USER, "type": "api", "authMethod": "ApiKey"})
    finally:
        admin.close()
    return api_user_key(site, ROLELESS_USER)


def _user_named(name: str) -> dict[str, str]:
    return {"where[0][type]": "equals", "where[0][attribute]": "userName", "where[0][value]": name}


def _provisioned(site: EspoCrmSite, local: LocalEspoCrm | None) -> RealEspoCrm:
    try:
        return RealEspoCrm(site, provision(site, env="test"), _roleless_key(site), local)
    except EspoCrmUnavailable as exc:
        if local is not None:
            local.__exit__()
        _unavailable(str(exc))
        raise


@pytest.fixture(scope="session")
def real_espocrm() -> Iterator[RealEspoCrm]:
    if EXTERNAL_URL and EXTERNAL_ADMIN_PASSWORD:
        yield _provisioned(EspoCrmSite(EXTERNAL_URL.rstrip("/"), EXTERNAL_ADMIN_USER, EXTERNAL_ADMIN_PASSWORD), None)
        return
    reason = unavailable_reason()
    if reason:
        _unavailable(reason)
    try:
        local = LocalEspoCrm(ensure_installed()).__enter__()
    except EspoCrmUnavailable as exc:
        _unavailable(str(exc))
        raise
    espocrm = _provisioned(local.site, local)
    try:
        yield espocrm
    finally:
        local.__exit__()
