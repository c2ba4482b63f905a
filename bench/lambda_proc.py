"""One Lambda-like Python process for the benchmark: ``python -I -S -B lambda_proc.py SPEC``.

It imports only the standard library of its own, so whatever else the process loads is what the
handler (or its floor) loads. ``-B`` and a code directory whose files carry the 1980 timestamps of
SAM's zip make it read what the artifact ships and write no bytecode, as on Lambda, where
``/var/task`` and ``/opt`` are read-only. Modes (``SPEC`` is a JSON file written by the parent):

* ``function``: import the handler (Lambda's init), serve one event, report the times;
* ``floor``: only the irreducible work of that function: import the same libraries (boto3 from the
  runtime, httpx from the layer), make the same AWS and CRM calls, nothing else;
* ``trace``: like ``function``, untimed, recording each AWS and CRM call (the floor replays them);
* ``serve``: import the handler, then answer events from a pipe (the backlog drain's workers), with
  DynamoDB optionally in memory behind a fixed latency (``bench.fake_aws``);
* ``meter``: import the handler, serve a list of events (the first one cold), and report for each
  what it is billed by: CPU time, AWS calls with DynamoDB's capacity units, CRM requests and the
  bytes written to stdout and stderr, which Lambda sends to CloudWatch Logs (``bench.cost``; the
  tracing loads botocore and httpx before the handler, so a cold start's CPU time is a
  ``function`` process's).

Times are ``time.monotonic_ns()`` (CLOCK_MONOTONIC, shared with the parent process), so the parent
can put the process's start, init and first invocation on one time line.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from typing import Any


def _now() -> int:
    return time.monotonic_ns()


def _context(spec: dict[str, Any]) -> Any:
    from infra.local.http_events import LambdaContext

    function = spec.get("function_name", "bench")
    return LambdaContext(
        function, int(spec.get("timeout_seconds", 10)), memory_limit_in_mb=int(spec.get("memory", 512))
    )


def _trace_calls(calls: list[dict[str, Any]], table_keys: dict[str, str] | None = None) -> None:
    """Record every AWS API call (botocore) and CRM request (httpx) the handler makes; with the
    tables' keys, each DynamoDB call's capacity units too (``bench.cost.dynamodb_units``)."""
    import botocore.client
    import httpx

    make_api_call = botocore.client.BaseClient._make_api_call  # type: ignore[attr-defined]
    send = httpx.Client.send

    def traced_api_call(client: Any, operation: str, params: dict[str, Any]) -> Any:
        kept = {key: params[key] for key in ("QueueUrl", "TableName", "Name", "KeyId", "SecretId") if key in params}
        call = {"kind": "aws", "service": client.meta.service_model.service_name, "operation": operation} | kept
        calls.append(call)
        if table_keys is None or call["service"] != "dynamodb":
            return make_api_call(client, operation, params)
        return _metered_dynamodb_call(make_api_call, client, operation, params, table_keys, call)

    def traced_send(client: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        calls.append(
            {
                "kind": "http",
                "method": request.method,
                "url": str(request.url),
                "headers": {k: v for k, v in request.headers.items() if k.lower().startswith("x-")},
                "body": request.content.decode(),
            }
        )
        return send(client, request, **kwargs)

    botocore.client.BaseClient._make_api_call = traced_api_call  # type: ignore[attr-defined]
    httpx.Client.send = traced_send  # type: ignore[assignment]


PROBES = {"cpu": 0}
"""CPU nanoseconds spent reading items to size them (``meter`` mode; each thread's own, as
applications calls DynamoDB from two): not the handler's, taken off it."""


def _metered_dynamodb_call(
    make_api_call: Any, client: Any, operation: str, params: dict[str, Any], keys: dict[str, str], call: dict[str, Any]
) -> Any:
    """Make the call and put its capacity units in ``call``, from the item's size before and after
    (read untimed, with the same client); a refused conditional write is billed too."""
    from bench.cost import dynamodb_units, item_size

    def size() -> int:
        cpu = time.thread_time_ns()
        item = params.get("Key") or {keys[params["TableName"]]: params["Item"][keys[params["TableName"]]]}
        read = make_api_call(client, "GetItem", {"TableName": params["TableName"], "Key": item, "ConsistentRead": True})
        PROBES["cpu"] += time.thread_time_ns() - cpu
        return item_size(read.get("Item") or {})

    before = size() if operation != "GetItem" else 0
    try:
        result = make_api_call(client, operation, params)
    finally:
        after = size()
        call["units"] = dynamodb_units(operation, max(before, after), consistent=bool(params.get("ConsistentRead")))
    return result


class _LogBytes:
    """Stands in for stdout and stderr: what a function writes there is what CloudWatch Logs ingests,
    one log event a line."""

    encoding = "utf-8"

    def __init__(self) -> None:
        self.bytes = 0
        self.lines = 0

    def write(self, text: str) -> int:
        self.bytes += len(text.encode())
        self.lines += text.count("\n")
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def _meter(handler: Any, spec: dict[str, Any], calls: list[dict[str, Any]], logs: _LogBytes) -> None:
    """Serve each event of the spec and report what it was billed by (the first one is the cold one,
    whose log bytes include what the handler's import wrote)."""
    init_log_bytes = logs.bytes
    invocations = []
    for event in spec["events"]:
        first_call, probes, log_bytes, log_lines = len(calls), PROBES["cpu"], logs.bytes, logs.lines
        cpu = time.process_time_ns()
        problem = _check(handler(event, _context(spec)), spec.get("expected_status"))
        if problem:
            raise RuntimeError(f"{spec['handler']}: {problem}")
        invocations.append(
            {
                "cpu_ms": (time.process_time_ns() - cpu - (PROBES["cpu"] - probes)) / 1e6,
                "calls": calls[first_call:],
                "log_bytes": logs.bytes - log_bytes,
                "log_lines": logs.lines - log_lines,
            }
        )
    report = {"init_log_bytes": init_log_bytes, "invocations": invocations, "peak_rss_kb": _peak_rss_kb()}
    with open(spec["result_path"], "w", encoding="utf-8") as file:
        json.dump(report, file)


def _imported_files() -> list[dict[str, Any]]:
    """Every module loaded from Python code, and whether it ran from bytecode that was there to load
    (a module shipped as bytecode only has its ``.pyc`` as ``__file__``)."""
    imported = []
    for module in list(sys.modules.values()):
        path, cached = getattr(module, "__file__", None), getattr(module, "__cached__", None)
        if path and path.endswith(".pyc"):
            imported.append({"file": path, "bytecode": True})
        elif path and path.endswith(".py"):
            imported.append({"file": path, "bytecode": cached is not None and os.path.exists(cached)})
    return imported


def _peak_rss_kb() -> int:
    """This process's peak resident memory (``VmHWM``: getrusage's would include the parent's,
    from before the exec)."""
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


def _import_handler(name: str) -> Any:
    module_name, _, function_name = name.rpartition(".")
    module = __import__(module_name)
    return getattr(module, function_name)


def _check(result: Any, expected_status: int | None) -> str | None:
    """What is wrong with a handler's answer, or None."""
    if expected_status is None:
        failures = (result or {}).get("batchItemFailures") if isinstance(result, dict) else None
        return f"batch item failures: {failures}" if failures else None
    status = result.get("statusCode") if isinstance(result, dict) else None
    return None if status == expected_status else f"status {status}, expected {expected_status}: {result}"


def _floor_imports(ops: list[dict[str, Any]]) -> dict[str, Any]:
    """The floor's init: the libraries its calls need, and nothing else."""
    modules: dict[str, Any] = {}
    if any(op["kind"] == "aws" for op in ops):
        import boto3

        modules["boto3"] = boto3
    if any(op["kind"] == "http" for op in ops):
        import httpx

        modules["httpx"] = httpx
    return modules


def _floor_calls(modules: dict[str, Any], ops: list[dict[str, Any]], table_keys: dict[str, str]) -> None:
    """The same AWS and CRM calls as the function made, with the bare libraries (one client each)."""
    clients: dict[str, Any] = {}
    http: Any = None
    for op in ops:
        if op["kind"] == "http":
            http = http or modules["httpx"].Client(timeout=5.0)
            response = http.request(op["method"], op["url"], headers=op["headers"], content=op["body"] or None)
            if response.status_code >= 400:
                raise RuntimeError(f"floor request answered {response.status_code}")
            continue
        service = op["service"]
        if service not in clients:
            clients[service] = modules["boto3"].client(service)
        _aws_call(clients[service], op, table_keys)


def _aws_call(client: Any, op: dict[str, Any], table_keys: dict[str, str]) -> None:
    operation = op["operation"]
    if op["service"] == "dynamodb":
        key = {table_keys[op["TableName"]]: {"S": uuid.uuid4().hex}}
        table = op["TableName"]
        match operation:
            case "GetItem":
                client.get_item(TableName=table, Key=key, ConsistentRead=True)
            case "PutItem":
                client.put_item(TableName=table, Item=key | {"v": {"S": "x"}})
            case "UpdateItem":
                client.update_item(
                    TableName=table,
                    Key=key,
                    UpdateExpression="SET v = :v",
                    ExpressionAttributeValues={":v": {"S": "x"}},
                )
            case "DeleteItem":
                client.delete_item(TableName=table, Key=key)
            case _:
                raise ValueError(f"no floor for dynamodb {operation}")
        return
    match (op["service"], operation):
        case ("sqs", "SendMessage"):
            client.send_message(QueueUrl=op["QueueUrl"], MessageBody="{}")
        case ("ssm", "GetParameter"):
            client.get_parameter(Name=op["Name"], WithDecryption=True)
        case ("secretsmanager", "GetSecretValue"):
            client.get_secret_value(SecretId=op["SecretId"])
        case ("kms", "Encrypt"):
            client.encrypt(KeyId=op["KeyId"], Plaintext=b"x")
        case _:
            raise ValueError(f"no floor for {op['service']} {operation}")


def _serve(handler: Any, spec: dict[str, Any], reader: Any, writer: Any) -> None:
    """Answer ``{"event": ...}`` lines from the parent until it closes the pipe."""
    for line in reader:
        event = json.loads(line)
        try:
            result = {"ok": True, "payload": handler(event, _context(spec))}
        except Exception as exc:
            result = {"ok": False, "payload": {"errorType": type(exc).__name__, "errorMessage": str(exc)}}
        writer.write(json.dumps(result) + "\n")
        writer.flush()


def main(spec_path: str) -> int:
    started = _now()
    with open(spec_path, encoding="utf-8") as file:
        spec = json.load(file)
    os.environ.clear()
    os.environ.update(spec["environ"])
    sys.path[:0] = spec["sys_path"]
    sys.path.extend(spec.get("extra_path", []))
    mode = spec["mode"]
    calls: list[dict[str, Any]] = []
    if mode == "trace":
        _trace_calls(calls)
    logs = _LogBytes()
    if mode == "meter":
        _trace_calls(calls, spec["table_keys"])
        sys.stdout = sys.stderr = logs
    context = _context(spec)
    booted = _now()
    problem: str | None = None
    if mode == "floor":
        modules = _floor_imports(spec["ops"])
        initialized = _now()
        _floor_calls(modules, spec["ops"], spec.get("table_keys", {}))
        served = _now()
    else:
        if spec.get("fake_dynamodb_latency_ms") is not None:  # serve mode, for the backlog drain
            from bench.fake_aws import FakeDynamoDb, install

            install({"dynamodb": FakeDynamoDb(latency_seconds=spec["fake_dynamodb_latency_ms"] / 1000)})
        handler = _import_handler(spec["handler"])
        initialized = _now()
        if mode == "meter":
            _meter(handler, spec, calls, logs)
            os._exit(0)
        if mode == "serve":
            with os.fdopen(spec["in_fd"], encoding="utf-8") as reader, os.fdopen(spec["out_fd"], "w") as writer:
                writer.write("ready\n")
                writer.flush()
                _serve(handler, spec, reader, writer)
            return 0
        problem = _check(handler(spec["event"], context), spec.get("expected_status"))
        served = _now()
    if "signal_fd" in spec:
        os.write(spec["signal_fd"], b".")
    report = {
        "imported": _imported_files() if mode == "trace" else [],
        "started": started,
        "booted": booted,
        "initialized": initialized,
        "served": served,
        "problem": problem,
        "calls": calls,
        "modules": len(sys.modules),
    }
    with open(spec["result_path"], "w", encoding="utf-8") as file:
        json.dump(report, file)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # Lambda keeps the process; tearing down hundreds of modules is not part of a cold start


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
