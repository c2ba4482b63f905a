"""The local EspoCRM harness (infra/espocrm/local.py): what it says when it cannot run, and that it
stops what it started."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import httpx
import pytest

from infra.espocrm import local
from tests.real_crm.fixtures import RealEspoCrm


def test_a_missing_tarball_is_named_with_the_variable_that_moves_it(tmp_path: Path) -> None:
    reason = local.unavailable_reason(tmp_path / "espocrm-8.4.2.tar.gz")

    assert reason is not None
    assert str(tmp_path) in reason
    assert "ESPOCRM_TARBALL" in reason


def test_missing_programs_are_named_with_the_command_that_installs_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tarball = tmp_path / "espocrm-8.4.2.tar.gz"
    tarball.write_bytes(b"")
    monkeypatch.setenv("PATH", str(tmp_path))

    reason = local.unavailable_reason(tarball)

    assert reason is not None
    assert "php" in reason
    assert "mariadbd" in reason
    assert "make system-packages" in reason


def test_a_tarball_that_is_not_the_release_is_refused(tmp_path: Path) -> None:
    if local.unavailable_reason() is not None:
        pytest.skip(f"no local EspoCRM here: {local.unavailable_reason()}")
    fake = tmp_path / "espocrm-8.4.2.tar.gz"
    fake.write_bytes(b"not EspoCRM")

    with pytest.raises(local.EspoCrmUnavailable, match="sha256"):
        local.ensure_installed(fake, cache=tmp_path / "cache")


@pytest.mark.real_espocrm
def test_an_instance_runs_in_its_own_process_groups_and_leaves_nothing_behind(real_espocrm: RealEspoCrm) -> None:
    if real_espocrm.local is None:
        pytest.skip("the EspoCRM given by ESPOCRM_URL is not started by the harness")
    instance = local.LocalEspoCrm(real_espocrm.local.installation)
    with instance:
        processes = [instance.database._process, instance.web._process]
        assert all(process is not None and os.getpgid(process.pid) == process.pid for process in processes)
        assert httpx.get(f"{instance.site.url}/api/v1/Metadata", timeout=10).status_code == 401
        instance.stop_web()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{instance.site.url}/api/v1/Metadata", timeout=10)
        instance.start_web()
        assert httpx.get(f"{instance.site.url}/api/v1/Metadata", timeout=10).status_code == 401
        ports = (instance.web.port, instance.database.port)

    assert not instance.runtime.exists()
    for port in ports:
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"something still listens on {port}"
