"""AWS on loopback: moto's server, for every service at one endpoint.

The functions find it through the standard ``AWS_ENDPOINT_URL`` setting (boto3 >= 1.28 reads it
for every service), so the layer has no local code path: what it sends to SQS here is what it
sends to SQS in AWS. The stack is deployed into it (:mod:`infra.local.stack`) while anyone may do
anything; then IAM is enforced, and every caller acts with the rights of its own role.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Protocol

import boto3
from moto.core.authorization import enable_iam_authentication
from moto.server import ThreadedMotoServer

from infra.local import iam

LOOPBACK = "127.0.0.1"
REGION = "eu-central-1"
# Until IAM is enforced moto accepts any credentials; these keep a developer's real ones out of the deploy.
CREDENTIALS = dict.fromkeys(("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"), "local")


class AwsClients(Protocol):
    """What the deploy and the stack's readers need of AWS: a client per service and caller."""

    def client(self, service: str, credentials: dict[str, str] | None = None) -> Any: ...


class ClientsByCaller:
    """Clients made once per service and caller (boto3 clients are thread-safe, making them is not),
    each of its own session: a caller is its credentials, as in a Lambda container."""

    def __init__(self, endpoint: str | None = None) -> None:
        self.endpoint = endpoint
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def client(self, service: str, credentials: dict[str, str]) -> Any:
        with self._lock:
            key = (service, credentials["AWS_ACCESS_KEY_ID"])
            if key not in self._clients:
                self._clients[key] = session_of(credentials).client(service, endpoint_url=self.endpoint)  # type: ignore[call-overload]
            return self._clients[key]


def session_of(credentials: dict[str, str]) -> boto3.session.Session:
    return boto3.session.Session(
        aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=credentials.get("AWS_SESSION_TOKEN"),
        region_name=REGION,
    )


class LocalAws:
    """moto's server on a free loopback port, for every service at one endpoint."""

    def __init__(self) -> None:
        self._server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
        self.endpoint = ""
        self.credentials = dict(CREDENTIALS)
        """Of the runner itself: the operator's once IAM is enforced."""
        self._clients = ClientsByCaller()
        self._iam = contextlib.ExitStack()

    def start(self) -> None:
        iam.install()
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = self._clients.endpoint = f"http://{host}:{port}"

    def stop(self) -> None:
        self._iam.close()
        self._server.stop()

    def enforce_iam(self, credentials: dict[str, str], on_denied: iam.Denied) -> None:
        """From now on every request needs credentials whose policies allow it (moto's server runs in
        this process); the runner's own requests use ``credentials``."""
        iam.report_denied(on_denied)
        self._iam.enter_context(enable_iam_authentication())
        self.credentials = dict(credentials)

    def environment(self, credentials: dict[str, str] | None = None) -> dict[str, str]:
        """What a local process needs to reach this server, with these credentials (the runner's)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            **(credentials or self.credentials),
        }

    def client(self, service: str, credentials: dict[str, str] | None = None) -> Any:
        """A client of this server, with these credentials (the runner's by default)."""
        return self._clients.client(service, credentials or self.credentials)


def store_secret(aws: AwsClients, name: str, value: str) -> None:
    """Keep a secret where the functions read it in AWS: an SSM SecureString, or Secrets Manager
    for ``secretsmanager:<name>`` (the prefix the layer's settings understand)."""
    if name.startswith("secretsmanager:"):
        aws.client("secretsmanager").create_secret(Name=name.removeprefix("secretsmanager:"), SecretString=value)
    else:
        aws.client("ssm").put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)


def queue_depths(aws: LocalAws, url: str) -> dict[str, int]:
    """Messages waiting, in flight (or backing off) and delayed on a queue."""
    attributes = aws.client("sqs").get_queue_attributes(
        QueueUrl=url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return {
        "waiting": int(attributes.get("ApproximateNumberOfMessages", 0)),
        "in_flight": int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
        "delayed": int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
    }
