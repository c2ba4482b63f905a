"""template.yaml as the local runner reads it, by resource *type* and property, never by logical id.

The SAM source says where each function's code is and which of its variables a local setting may set
(Globals merged in, as SAM does); the parameters are checked as CloudFormation checks them. The API
Gateway that moto's CloudFormation does not create is read from the *transformed* template, as
deployed: the routes and CORS of each ``AWS::ApiGatewayV2::Api`` body, the throttles of its stage.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from infra.cloudformation_yaml import load_sam

SERVERLESS_FUNCTION = "AWS::Serverless::Function"
API = "AWS::ApiGatewayV2::Api"
STAGE = "AWS::ApiGatewayV2::Stage"
_INTEGRATED_FUNCTION = re.compile(r"\$\{(\w+)\.Arn\}")


class TemplateError(Exception):
    """The template cannot be run locally as it stands; the message says where."""


# --- loading -------------------------------------------------------------------------------------


def load_template(path: Path) -> Template:
    try:
        text = path.read_text(encoding="utf-8")
        document = load_sam(text)
    except (OSError, yaml.YAMLError) as exc:
        raise TemplateError(f"cannot read {path.name}: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise TemplateError(f"{path.name} has no Resources")
    return Template(document, path.parent)


# --- what the template declares ------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """One HttpApi route: ``method`` is upper case or ``ANY``; ``path`` may hold ``{name}`` and ``{proxy+}``."""

    method: str
    path: str
    function: str

    @property
    def route_key(self) -> str:
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """The path parameters when this route serves the request, else None."""
        if self.method not in ("ANY", method):
            return None
        if self.path == "$default":
            return {}
        pattern = _route_patterns(self.path)
        found = pattern.fullmatch(path)
        return None if found is None else dict(found.groupdict())

    def specificity(self) -> tuple[int, int, int]:
        """API Gateway prefers literal segments, then parameters, then greedy paths, then $default."""
        if self.path == "$default":
            return (3, 0, 0)
        parts = self.path.strip("/").split("/")
        greedy = any(part.endswith("+}") for part in parts)
        variables = sum(part.startswith("{") for part in parts)
        return (2 if greedy else 0, variables, -len(parts)) if variables else (0, 0, -len(parts))


@dataclass(frozen=True)
class QueueSource:
    """A deployed SQS event source mapping: the function (logical id), the queue, how it batches."""

    function: str
    queue: str
    """The queue's ARN."""
    batch_size: int = 10
    batching_window_seconds: int = 0
    report_batch_item_failures: bool = False
    maximum_concurrency: int | None = None


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    code_dir: Path
    handler: str
    timeout_seconds: int
    memory_mb: int
    runtime: str
    environment: dict[str, Any] = field(default_factory=dict)
    """Unresolved: values may be intrinsic functions."""

    @property
    def module(self) -> str:
        return self.handler.rsplit(".", 1)[0]

    @property
    def function_name(self) -> str:
        return self.handler.rsplit(".", 1)[1]


class Template:
    def __init__(self, document: dict[str, Any], root: Path) -> None:
        self.document = document
        self.root = root
        self.resources: dict[str, dict[str, Any]] = document["Resources"]
        self.parameters: dict[str, dict[str, Any]] = document.get("Parameters") or {}
        self.conditions: dict[str, Any] = document.get("Conditions") or {}
        self.mappings: dict[str, Any] = document.get("Mappings") or {}
        self._function_globals: dict[str, Any] = (document.get("Globals") or {}).get("Function") or {}

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        """Properties of every resource of this type, by logical id."""
        return {
            logical_id: resource.get("Properties") or {}
            for logical_id, resource in self.resources.items()
            if resource.get("Type") == resource_type
        }

    def functions(self) -> dict[str, FunctionSpec]:
        specs: dict[str, FunctionSpec] = {}
        for logical_id, properties in self.of_type(SERVERLESS_FUNCTION).items():
            merged = _merge_globals(self._function_globals, properties)
            code_uri, handler = merged.get("CodeUri"), merged.get("Handler")
            if not isinstance(code_uri, str) or not isinstance(handler, str):
                raise TemplateError(f"{logical_id}: the runner needs a local CodeUri and a Handler")
            specs[logical_id] = FunctionSpec(
                logical_id=logical_id,
                code_dir=(self.root / code_uri).resolve(),
                handler=handler,
                timeout_seconds=int(merged.get("Timeout", 3)),
                memory_mb=int(merged.get("MemorySize", 128)),
                runtime=str(merged.get("Runtime", "")),
                environment=dict((merged.get("Environment") or {}).get("Variables") or {}),
            )
        return specs

    def variables(self) -> dict[str, Any]:
        """Every environment variable some function declares, with its (unresolved) value."""
        variables: dict[str, Any] = {}
        for spec in self.functions().values():
            variables |= spec.environment
        return variables

    def parameter_for_variable(self) -> dict[str, str]:
        """Environment variables that are a template parameter as they stand (``VAR: !Ref Param``):
        setting such a variable locally sets the parameter, wherever else the template uses it."""
        return {
            name: value["Ref"]
            for name, value in self.variables().items()
            if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in self.parameters
        }

    def list_parameter_for_variable(self) -> dict[str, str]:
        """Variables that join a list parameter as they stand (``VAR: !Join [",", !Ref Param]`` with
        ``Param`` a ``CommaDelimitedList``): a local value of such a variable is that parameter's value
        too, wherever else the template uses it (``SITE_ORIGINS`` and the HttpApi's CORS origins)."""
        found: dict[str, str] = {}
        for name, value in self.variables().items():
            joined = value.get("Fn::Join") if isinstance(value, dict) and set(value) == {"Fn::Join"} else None
            if not (isinstance(joined, list) and len(joined) == 2 and joined[0] == ","):
                continue
            reference = joined[1]
            if isinstance(reference, dict) and set(reference) == {"Ref"}:
                declaration = self.parameters.get(str(reference["Ref"])) or {}
                if declaration.get("Type") == "CommaDelimitedList":
                    found[name] = str(reference["Ref"])
        return found

    def variables_wired_to_resources(self) -> set[str]:
        """Variables whose value names a resource of the template (a queue URL, a table name): the
        stack, or the runner, sets them; configuration cannot."""
        return {name for name, value in self.variables().items() if _references_resource(value, self.resources)}


@cache
def _route_patterns(path: str) -> re.Pattern[str]:
    """``/go/{channel}`` -> a regex: ``{name}`` is one non-empty segment, ``{name+}`` the rest."""
    parts = []
    for part in path.strip("/").split("/"):
        if part.startswith("{") and part.endswith("+}"):
            parts.append(f"(?P<{part[1:-2]}>.+)")
        elif part.startswith("{") and part.endswith("}"):
            parts.append(f"(?P<{part[1:-1]}>[^/]+)")
        else:
            parts.append(re.escape(part))
    return re.compile("/" + "/".join(parts) + "/?")


def _references_resource(value: Any, resources: Mapping[str, Any]) -> bool:
    if isinstance(value, dict):
        if _referenced_resource(value) in resources:
            return True
        return any(_references_resource(item, resources) for item in value.values())
    if isinstance(value, list):
        return any(_references_resource(item, resources) for item in value)
    return False


def _merge_globals(globals_: Mapping[str, Any], properties: Mapping[str, Any]) -> dict[str, Any]:
    """SAM's Globals: maps merge (the function's keys win), everything else is overridden."""
    merged = dict(globals_)
    for key, value in properties.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge_globals(merged[key], value)
        else:
            merged[key] = value
    return merged


def _referenced_resource(value: Any) -> str | None:
    """The logical id in ``!Ref X`` or ``!GetAtt X.Attr``."""
    if isinstance(value, dict):
        if "Ref" in value:
            return str(value["Ref"])
        if "Fn::GetAtt" in value:
            return str(value["Fn::GetAtt"][0])
    return None


# --- parameters ----------------------------------------------------------------------------------


def parameter_values(template: Template, overrides: Mapping[str, str]) -> dict[str, Any]:
    """Every parameter's value: the override (checked as CloudFormation would), else its default,
    else an empty value (the functions' own settings validation names what is then missing)."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for name, declaration in template.parameters.items():
        if name in overrides:
            raw = overrides[name]
            problem = _parameter_problem(declaration, raw)
            if problem:
                problems.append(f"{name}: {problem}")
        else:
            raw = declaration.get("Default", "")
        raw = str(raw) if not isinstance(raw, list) else ",".join(str(item) for item in raw)
        if declaration.get("Type") == "CommaDelimitedList":
            values[name] = [item.strip() for item in raw.split(",")] if raw else []
        else:
            values[name] = raw
    if problems:
        raise TemplateError("invalid parameter values: " + "; ".join(problems))
    return values


def _parameter_problem(declaration: Mapping[str, Any], value: str) -> str | None:
    allowed = declaration.get("AllowedValues")
    if allowed is not None and value not in [str(item) for item in allowed]:
        return f"must be one of {', '.join(str(item) for item in allowed)}"
    pattern = declaration.get("AllowedPattern")
    if pattern is not None and not re.fullmatch(str(pattern), value):
        return f"does not match {pattern}"
    if declaration.get("Type") == "Number":
        try:
            number = float(value)
        except ValueError:
            return "must be a number"
        if "MinValue" in declaration and number < float(declaration["MinValue"]):
            return f"must be at least {declaration['MinValue']}"
        if "MaxValue" in declaration and number > float(declaration["MaxValue"]):
            return f"must be at most {declaration['MaxValue']}"
    return None


# --- the API, from the transformed template --------------------------------------------------------


def api_routes(transformed: Mapping[str, Any]) -> list[Route]:
    """Every route of the template's APIs (their OpenAPI bodies), most specific first (the order API
    Gateway matches in), each to the function its Lambda integration invokes."""
    routes: list[Route] = []
    for api in _of_type(transformed, API):
        for path, operations in ((api.get("Body") or {}).get("paths") or {}).items():
            for method, operation in operations.items():
                uri = (operation.get("x-amazon-apigateway-integration") or {}).get("uri")
                function = _INTEGRATED_FUNCTION.search(str((uri or {}).get("Fn::Sub", "")))
                if function is None:
                    raise TemplateError(f"{method.upper()} {path}: the runner serves Lambda integrations only")
                verb = "ANY" if method == "x-amazon-apigateway-any-method" else method.upper()
                routes.append(Route(verb, str(path), function.group(1)))
    keys = [route.route_key for route in routes]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise TemplateError(f"routes declared twice: {', '.join(duplicates)}")
    return sorted(routes, key=Route.specificity)


def api_cors(transformed: Mapping[str, Any]) -> dict[str, Any] | None:
    """The APIs' CORS (``x-amazon-apigateway-cors``, SAM's rendering of ``CorsConfiguration``) with
    CloudFormation's key names; None without. The local gateway serves every route on one host, so
    the template's APIs (there is one) must not disagree about it."""
    configurations = [
        {key[0].upper() + key[1:]: value for key, value in cors.items()}
        for api in _of_type(transformed, API)
        if (cors := (api.get("Body") or {}).get("x-amazon-apigateway-cors"))
    ]
    if any(configuration != configurations[0] for configuration in configurations[1:]):
        raise TemplateError("the APIs differ in CORS: the local gateway serves them as one")
    return configurations[0] if configurations else None


def api_throttles(transformed: Mapping[str, Any], parameters: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Each route's throttling as its stage applies it: its own ``RouteSettings`` over the stage's
    ``DefaultRouteSettings``, parameters resolved."""
    throttles: dict[str, dict[str, Any]] = {}
    for stage in _of_type(transformed, STAGE):
        defaults = _throttling(stage.get("DefaultRouteSettings"), parameters)
        for route in api_routes(transformed):
            own = _throttling((stage.get("RouteSettings") or {}).get(route.route_key), parameters)
            throttles[route.route_key] = defaults | own
    return throttles


def _of_type(transformed: Mapping[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [
        resource.get("Properties") or {}
        for resource in transformed["Resources"].values()
        if resource.get("Type") == resource_type
    ]


def _throttling(settings: Any, parameters: Mapping[str, str]) -> dict[str, Any]:
    return {
        name: parameters[value["Ref"]] if isinstance(value, dict) and "Ref" in value else value
        for name, value in (settings or {}).items()
        if name.startswith("Throttling")
    }
