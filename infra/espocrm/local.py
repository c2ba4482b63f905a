"""A real EspoCRM 8.4.2 on loopback, without Docker: for the tests, and for ``make run`` against the real CRM.

    python -m infra.espocrm.local      # start one, provision it, print the .env lines; Ctrl-C stops it

The release tarball (``shared/espocrm/espocrm-8.4.2.tar.gz``, or ``ESPOCRM_TARBALL``) is installed
once per machine into a cache (``CRM_BRIDGE_CACHE``, default ``~/.cache/crm-bridge``) with
EspoCRM's own CLI installer and a private MariaDB; the cache keeps the installed application and the
database's data directory, stopped cleanly: the pristine snapshot. Each :class:`LocalEspoCrm` runs
on a copy of both (the database copied, the application hard-linked but for its writable ``data/``
and ``custom/``), so a run starts from a clean install in about a second and never changes the
snapshot. MariaDB and PHP's built-in server listen on free loopback ports, each in its own process
group, and are stopped as a group (killing PHP's master alone leaves its workers on the port).

What the machine needs is Debian's PHP 8.2 and MariaDB (:data:`DEBIAN_PACKAGES`, installed by
``make system-packages`` as root); :func:`unavailable_reason` says what is missing, in words.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess  # nosec B404  # runs Debian's PHP and MariaDB, fixed argv, never a shell
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import httpx

VERSION = "8.4.2"
TARBALL_SHA256 = "48e81e0c5fca7279d562e3cf000943f38955b7307ec1d498305fe1ddd9832c37"
REPOSITORY = Path(__file__).resolve().parents[2]
ROUTER = Path(__file__).with_name("router.php")
DEBIAN_PACKAGES = (
    "php8.2-cli",
    "php8.2-mysql",
    "php8.2-mbstring",
    "php8.2-zip",
    "php8.2-gd",
    "php8.2-intl",
    "php8.2-xml",
    "php8.2-curl",
    "php8.2-bcmath",
    "mariadb-server",
)
COMMANDS = ("php", "mariadbd", "mariadb-install-db", "mariadb", "mariadb-admin")
PHP_EXTENSIONS = ("pdo_mysql", "mbstring", "zip", "gd", "intl", "dom", "curl", "bcmath")
ADMIN_USER = "admin"
DATABASE = "espocrm"
START_TIMEOUT_SECONDS = 30.0
_PRIVATE_WRITABLE = ("data", "custom")  # what EspoCRM writes into: copied per run, never linked


class EspoCrmUnavailable(Exception):
    """This machine cannot run a local EspoCRM; the message says why and what to do."""


def default_tarball() -> Path:
    if os.environ.get("ESPOCRM_TARBALL"):
        return Path(os.environ["ESPOCRM_TARBALL"])
    return REPOSITORY.parent / "shared" / "espocrm" / f"espocrm-{VERSION}.tar.gz"


def cache_root() -> Path:
    if os.environ.get("CRM_BRIDGE_CACHE"):
        return Path(os.environ["CRM_BRIDGE_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "crm-bridge"


def unavailable_reason(tarball: Path | None = None) -> str | None:
    """None when a local EspoCRM can run here; otherwise what is missing and how to get it."""
    tarball = tarball or default_tarball()
    if not tarball.is_file():
        return f"the EspoCRM {VERSION} release tarball is not at {tarball} (set ESPOCRM_TARBALL)"
    missing = [command for command in COMMANDS if shutil.which(command) is None]
    if not missing:
        php_modules = ["php", "-m"]
        listed = subprocess.run(php_modules, capture_output=True, text=True, check=False)  # noqa: S603  # nosec B603
        loaded = listed.stdout.lower().split()
        missing = [f"php extension {name}" for name in PHP_EXTENSIONS if name not in loaded]
    if missing:
        return (
            f"{', '.join(missing)} not installed: as root, `make system-packages` installs them "
            f"(apt-get install {' '.join(DEBIAN_PACKAGES)})"
        )
    return None


# --- the cached installation -----------------------------------------------------------------------


@dataclass(frozen=True)
class Installation:
    """The pristine install: the application tree and the stopped database's data directory."""

    home: Path
    admin_password: str
    database_password: str

    @property
    def application(self) -> Path:
        return self.home / "espocrm"

    @property
    def datadir(self) -> Path:
        return self.home / "mariadb"


def ensure_installed(tarball: Path | None = None, cache: Path | None = None) -> Installation:
    """The cached install, made first if needed (a few seconds; once per machine and tarball)."""
    tarball = tarball or default_tarball()
    reason = unavailable_reason(tarball)
    if reason:
        raise EspoCrmUnavailable(reason)
    home = (cache or cache_root()) / f"espocrm-{VERSION}"
    home.parent.mkdir(parents=True, exist_ok=True)
    with _locked(home.parent / f"espocrm-{VERSION}.lock"):
        found = _read_installation(home)
        if found is not None:
            return found
        if _sha256(tarball) != TARBALL_SHA256:
            raise EspoCrmUnavailable(f"{tarball} is not the EspoCRM {VERSION} release (its sha256 differs)")
        staging = Path(tempfile.mkdtemp(prefix="install-", dir=home.parent))
        try:
            installation = _install(tarball, staging)
            shutil.rmtree(home, ignore_errors=True)
            staging.rename(home)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return Installation(home, installation.admin_password, installation.database_password)


def _read_installation(home: Path) -> Installation | None:
    try:
        facts = json.loads((home / "installation.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if facts.get("version") != VERSION or facts.get("tarball_sha256") != TARBALL_SHA256:
        return None
    return Installation(home, facts["admin_password"], facts["database_password"])


def _install(tarball: Path, home: Path) -> Installation:
    installation = Installation(home, secrets.token_urlsafe(18), secrets.token_urlsafe(18))
    installation.application.mkdir()
    _run(["tar", "xzf", str(tarball), "--strip-components=1", "-C", str(installation.application)])
    with tempfile.TemporaryDirectory(prefix="crm-bridge-db-") as runtime:
        database = MariaDb(installation.datadir, Path(runtime))
        database.initialise()
        with database:
            database.sql(
                f"CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;"
                f"CREATE USER '{DATABASE}'@'127.0.0.1' IDENTIFIED BY '{installation.database_password}';"
                f"GRANT ALL ON {DATABASE}.* TO '{DATABASE}'@'127.0.0.1';"
            )
            _cli_install(installation, database.port)
    (home / "installation.json").write_text(
        json.dumps(
            {
                "version": VERSION,
                "tarball_sha256": TARBALL_SHA256,
                "admin_password": installation.admin_password,
                "database_password": installation.database_password,
            }
        ),
        encoding="utf-8",
    )
    (home / "installation.json").chmod(0o600)
    return installation


def _cli_install(installation: Installation, database_port: int) -> None:
    """EspoCRM's own CLI installer (install/cli.php), step by step; it prints ``Error:`` lines on failure."""
    steps: list[tuple[str, dict[str, str]]] = [
        ("step1", {"user-lang": "en_US"}),
        (
            "setupConfirmation",
            {
                "host-name": f"127.0.0.1:{database_port}",
                "db-name": DATABASE,
                "db-user-name": DATABASE,
                "db-user-password": installation.database_password,
                "db-platform": "Mysql",
            },
        ),
        ("checkPermission", {}),
        (
            "saveSettings",
            {"site-url": "http://127.0.0.1", "default-permissions-user": "root", "default-permissions-group": "root"},
        ),
        ("buildDatabase", {}),
        ("createUser", {"user-name": ADMIN_USER, "user-pass": installation.admin_password}),
        (
            "savePreferences",
            {
                "dateFormat": "YYYY-MM-DD",
                "timeFormat": "HH:mm",
                "timeZone": "UTC",
                "weekStart": "1",
                "defaultCurrency": "USD",
                "thousandSeparator": ",",
                "decimalMark": ".",
                "language": "en_US",
            },
        ),
        ("finish", {}),
    ]
    for action, data in steps:
        command = ["php", "install/cli.php", "-a", action]
        if data:
            command += ["-d", "&".join(f"{key}={value}" for key, value in data.items())]
        output = _run(command, cwd=installation.application)
        if "Error" in output:
            raise EspoCrmUnavailable(f"EspoCRM's installer failed at step {action}: {output.strip()[:300]}")


# --- processes ---------------------------------------------------------------------------------------


class MariaDb:
    """A private mariadbd: its own data directory, loopback port and socket, in its own process group."""

    def __init__(self, datadir: Path, runtime: Path) -> None:
        self.datadir = datadir
        self.runtime = runtime
        self.socket = runtime / "mysqld.sock"
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._config = runtime / "my.cnf"
        (runtime / "tmp").mkdir(exist_ok=True)
        self._config.write_text(
            "[mysqld]\n"
            f"user=root\nport={self.port}\nbind-address=127.0.0.1\nsocket={self.socket}\n"
            f"pid-file={runtime / 'mysqld.pid'}\ndatadir={datadir}\ntmpdir={runtime / 'tmp'}\n"
            "skip-name-resolve\ncharacter-set-server=utf8mb4\ncollation-server=utf8mb4_unicode_ci\n"
            "skip-log-bin\ninnodb_buffer_pool_size=128M\ninnodb_log_file_size=16M\n"
            # A test database: durability against power loss buys nothing, fsyncs cost every write.
            "innodb_flush_log_at_trx_commit=2\nsync_binlog=0\ninnodb_doublewrite=0\n",
            encoding="utf-8",
        )

    def initialise(self) -> None:
        self.datadir.mkdir(parents=True)
        _run(
            [
                "mariadb-install-db",
                f"--defaults-file={self._config}",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ]
        )

    def __enter__(self) -> Self:
        log = (self.runtime / "mariadbd.log").open("ab")
        self._process = subprocess.Popen(  # noqa: S603  # nosec B603 B607  # fixed argv; Debian's, from PATH
            ["mariadbd", f"--defaults-file={self._config}"],  # noqa: S607
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        _wait_for(self._answers, "MariaDB", self._process, self.runtime / "mariadbd.log")
        return self

    def _answers(self) -> bool:
        if not self.socket.exists():
            return False
        ping = subprocess.run(  # noqa: S603  # nosec B603 B607
            ["mariadb-admin", f"--socket={self.socket}", "-uroot", "ping"],  # noqa: S607
            capture_output=True,
            check=False,
        )
        return ping.returncode == 0

    def sql(self, statements: str) -> str:
        return _run(["mariadb", f"--socket={self.socket}", "-uroot", "--batch", "-e", statements])

    def __exit__(self, *_: object) -> None:
        """A clean shutdown (the data directory stays consistent), then the group, whatever is left."""
        if self._process is None:
            return
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(  # noqa: S603  # nosec B603 B607
                ["mariadb-admin", f"--socket={self.socket}", "-uroot", "shutdown"],  # noqa: S607
                capture_output=True,
                timeout=20,
                check=False,
            )
        _stop_group(self._process)
        self._process = None


class PhpServer:
    """PHP's built-in web server with EspoCRM's routing (router.php), on a fixed loopback port."""

    def __init__(self, application: Path, port: int, log: Path) -> None:
        self.application = application
        self.port = port
        self.log = log
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None

    def start(self) -> None:
        environment = dict(os.environ, ESPO_ROOT=str(self.application), PHP_CLI_SERVER_WORKERS="4")
        log = self.log.open("ab")
        self._process = subprocess.Popen(  # noqa: S603  # nosec B603 B607  # fixed argv; Debian's php, from PATH
            [  # noqa: S607
                "php",
                "-d",
                "memory_limit=512M",
                "-S",
                f"127.0.0.1:{self.port}",
                "-t",
                str(self.application / "public"),
                str(ROUTER),
            ],
            stdout=log,
            stderr=log,
            env=environment,
            start_new_session=True,
        )
        log.close()
        _wait_for(self._answers, "EspoCRM's web server", self._process, self.log)

    def _answers(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/api/v1/Metadata", timeout=2).status_code in (200, 401)
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self._process is not None:
            _stop_group(self._process)
            self._process = None


# --- one running instance -------------------------------------------------------------------------------


@dataclass(frozen=True)
class EspoCrmSite:
    """Where a running EspoCRM answers, and its administrator (Basic auth, as the admin API needs)."""

    url: str
    admin_user: str
    admin_password: str


class LocalEspoCrm:
    """A running copy of the pristine install; ``with`` starts it, leaving the block stops and removes it."""

    def __init__(self, installation: Installation) -> None:
        self.installation = installation
        self.runtime = Path(tempfile.mkdtemp(prefix="crm-bridge-espocrm-"))
        self.application = self.runtime / "espocrm"
        self.database = MariaDb(self.runtime / "mariadb", self.runtime)
        self.web = PhpServer(self.application, free_port(), self.runtime / "php.log")

    @property
    def site(self) -> EspoCrmSite:
        return EspoCrmSite(f"http://127.0.0.1:{self.web.port}", ADMIN_USER, self.installation.admin_password)

    def __enter__(self) -> Self:
        try:
            _run(["cp", "-a", str(self.installation.datadir), str(self.database.datadir)])
            self._copy_application()
            self.database.__enter__()
            self.web.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _copy_application(self) -> None:
        source = self.installation.application
        self.application.mkdir()
        for entry in source.iterdir():
            mode = "-a" if entry.name in _PRIVATE_WRITABLE else "-al"
            _run(["cp", mode, str(entry), str(self.application / entry.name)])
        _set_config(self.application / "data" / "config-internal.php", "port", f"'{self.database.port}'")
        _set_config(self.application / "data" / "config.php", "siteUrl", f"'http://127.0.0.1:{self.web.port}'")

    def stop_web(self) -> None:
        """An outage: the web server goes away (the database and the data stay)."""
        self.web.stop()

    def start_web(self) -> None:
        """The end of an outage: the same site on the same port."""
        self.web.start()

    def __exit__(self, *_: object) -> None:
        self.web.stop()
        self.database.__exit__()
        shutil.rmtree(self.runtime, ignore_errors=True)


def provision(site: EspoCrmSite, *, env: str = "local") -> str:
    """Run the project's provisioning command against the site, as an operator would; return the API key.

    The command prints the key it issued once; rather than parse its output, the key is read back
    as the admin (the server shows an API user's key to administrators)."""
    completed = subprocess.run(  # noqa: S603  # nosec B603  # our own module, fixed argv
        [sys.executable, "-m", "infra.espocrm.provision", "--url", site.url, "--env", env],
        cwd=REPOSITORY,
        env=dict(os.environ, ESPOCRM_ADMIN_PASSWORD=site.admin_password, ESPOCRM_ADMIN_USER=site.admin_user),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if completed.returncode != 0:
        summary = [line for line in completed.stdout.splitlines() if "API key" not in line and "--value" not in line]
        raise EspoCrmUnavailable(
            f"the provisioning command failed ({completed.returncode}): " + " | ".join(summary[-8:]) + completed.stderr
        )
    return api_user_key(site)


def api_user_key(site: EspoCrmSite, user_name: str = "crm-bridge") -> str:
    users = admin_get(site, "User", params={"select": "apiKey,userName", **_where_equals("userName", user_name)})
    found = [user for user in users["list"] if user.get("userName") == user_name]
    if not found or not found[0].get("apiKey"):
        raise EspoCrmUnavailable(f"EspoCRM has no API user {user_name!r} with a key")
    return str(found[0]["apiKey"])


def admin_get(site: EspoCrmSite, path: str, params: dict[str, str] | None = None) -> Any:
    response = httpx.get(
        f"{site.url}/api/v1/{path}", params=params, auth=(site.admin_user, site.admin_password), timeout=30
    )
    response.raise_for_status()
    return response.json()


def _where_equals(attribute: str, value: str) -> dict[str, str]:
    return {"where[0][type]": "equals", "where[0][attribute]": attribute, "where[0][value]": value}


# --- small helpers ----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run(command: Sequence[str], *, cwd: Path | None = None) -> str:
    completed = subprocess.run(  # noqa: S603  # nosec B603  # fixed argv, no shell
        list(command), cwd=cwd, capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        raise EspoCrmUnavailable(
            f"{command[0]} {command[1] if len(command) > 1 else ''} failed ({completed.returncode}): "
            f"{(completed.stderr or completed.stdout).strip()[-500:]}"
        )
    return completed.stdout


def _wait_for(ready: Any, what: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EspoCrmUnavailable(f"{what} exited at start ({process.returncode}): {_tail(log)}")
        if ready():
            return
        time.sleep(0.05)
    _stop_group(process)
    raise EspoCrmUnavailable(f"{what} did not start within {START_TIMEOUT_SECONDS:.0f} s: {_tail(log)}")


def _tail(log: Path) -> str:
    with contextlib.suppress(OSError):
        return " | ".join(log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:])
    return ""


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group, SIGKILL to what is left after a few seconds."""
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
            break
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # the group's other members (PHP's workers)


def _set_config(path: Path, key: str, php_value: str) -> None:
    text = path.read_text(encoding="utf-8")
    text, count = re.subn(rf"('{key}' => )[^,\n]+", lambda match: match.group(1) + php_value, text, count=1)
    if count != 1:
        raise EspoCrmUnavailable(f"{path.name} has no {key!r} setting")
    path.write_text(text, encoding="utf-8")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One installer at a time on a machine (two test runs starting together)."""
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# --- the command --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.espocrm.local",
        description="Start a real EspoCRM on loopback from the cached install, provision it, print the .env lines.",
    )
    parser.parse_args(argv)
    try:
        installation = ensure_installed()
        with LocalEspoCrm(installation) as espocrm:
            site = espocrm.site
            key = provision(site)
            print(f"EspoCRM {VERSION} at {site.url} (admin {site.admin_user!r}, password in {installation.home}).")
            print("For make run, in another terminal:\n")
            print(f"  CRM_PROVIDER=espocrm ESPOCRM_URL={site.url} ESPOCRM_API_KEY={key} make run\n")
            print("Ctrl-C stops it (its data goes with it).", flush=True)
            # A SIGTERM (a terminal closing, a supervisor) stops it as cleanly as Ctrl-C does.
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
    except EspoCrmUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
