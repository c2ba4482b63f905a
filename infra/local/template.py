"""template.yaml as the local runner reads it: routes, functions, queues, tables and keys.

Everything the runner starts is derived from the SAM template by resource *type* and property, never
by logical id, so that local and deployed cannot drift: the HttpApi events of each
``AWS::Serverless::Function`` are the gateway's routes, its ``SQS`` event is the poller's source,
the ``AWS::SQS::Queue`` / ``AWS::DynamoDB::Table`` / ``AWS::KMS::Key`` resources are what moto gets,
and each function's environment (Globals merged in, as SAM does) is resolved against the local
resources by :class:`Resolver`, a small evaluator of the intrinsic functions the template uses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

SERVERLESS_FUNCTION = "AWS::Serverless::Function"
SQS_QUEUE = "AWS::SQS::Queue"
DYNAMODB_TABLE = "AWS::DynamoDB::Table"
KMS_KEY = "AWS::KMS::Key"
KMS_ALIAS = "AWS::KMS::Alias"
HTTP_API = "AWS::Serverless::HttpApi"

ACCOUNT_ID = "123456789012"  # moto's default account
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")
_NO_VALUE = object()


class TemplateError(Exception):
    """The template cannot be run locally as it stands; the message says where."""


class Unresolved(Exception):
    """A reference to a resource that does not exist locally (yet): provisioning order decides."""


# --- loading -------------------------------------------------------------------------------------


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags (``!Ref``, ``!GetAtt``, ``!Sub`` ...)."""


def _construct_intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:  # pragma: no cover - YAML has no other kind of node
        raise TemplateError(f"!{tag_suffix}: unexpected YAML node")
    if tag_suffix == "Condition":
        return {"Condition": value}
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_intrinsic)


def load_template(path: Path) -> Template:
    try:
        text = path.read_text(encoding="utf-8")
        document = yaml.load(text, Loader=_CfnLoader)  # noqa: S506  # nosec B506  # a SafeLoader subclass
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
    """A function's SQS event: which queue, and how Lambda's event source mapping batches it."""

    function: str
    queue: str
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

    def routes(self) -> list[Route]:
        """Every HttpApi route, most specific first (the order API Gateway matches in)."""
        routes: list[Route] = []
        for logical_id, properties in self.of_type(SERVERLESS_FUNCTION).items():
            for event in (properties.get("Events") or {}).values():
                if event.get("Type") != "HttpApi":
                    continue
                event_properties = event.get("Properties") or {}
                path, method = event_properties.get("Path"), event_properties.get("Method")
                if path is None:
                    routes.append(Route("ANY", "$default", logical_id))
                else:
                    routes.append(Route(str(method or "ANY").upper(), str(path), logical_id))
        keys = [route.route_key for route in routes]
        duplicates = sorted({key for key in keys if keys.count(key) > 1})
        if duplicates:
            raise TemplateError(f"routes declared twice: {', '.join(duplicates)}")
        return sorted(routes, key=Route.specificity)

    def queue_sources(self) -> list[QueueSource]:
        sources: list[QueueSource] = []
        for logical_id, properties in self.of_type(SERVERLESS_FUNCTION).items():
            for event in (properties.get("Events") or {}).values():
                if event.get("Type") != "SQS":
                    continue
                event_properties = event.get("Properties") or {}
                if event_properties.get("Enabled") is False:
                    continue
                queue = _referenced_resource(event_properties.get("Queue"))
                if queue is None or self.resources.get(queue, {}).get("Type") != SQS_QUEUE:
                    raise TemplateError(f"{logical_id}: its SQS event must name a queue of this template")
                sources.append(
                    QueueSource(
                        function=logical_id,
                        queue=queue,
                        batch_size=int(event_properties.get("BatchSize", 10)),
                        batching_window_seconds=int(event_properties.get("MaximumBatchingWindowInSeconds", 0)),
                        report_batch_item_failures="ReportBatchItemFailures"
                        in (event_properties.get("FunctionResponseTypes") or []),
                        maximum_concurrency=(event_properties.get("ScalingConfig") or {}).get("MaximumConcurrency"),
                    )
                )
        return sources

    def main_and_dead_letter_queues(self) -> tuple[str, str]:
        """The queue with a redrive policy and the queue it dead-letters to (logical ids)."""
        for logical_id, properties in self.of_type(SQS_QUEUE).items():
            target = _referenced_resource((properties.get("RedrivePolicy") or {}).get("deadLetterTargetArn"))
            if target is not None:
                return logical_id, target
        raise TemplateError("no AWS::SQS::Queue with a RedrivePolicy: the runner needs the queue and its DLQ")

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

    def route_throttles(self) -> dict[str, Any]:
        """Each route's throttling (unresolved ``{"ThrottlingRateLimit": .., "ThrottlingBurstLimit": ..}``):
        its event's ``RouteSettings`` over the HttpApi's ``DefaultRouteSettings``, as the stage applies them."""
        defaults: dict[str, Any] = {}
        for properties in self.of_type(HTTP_API).values():
            defaults |= {
                name: value
                for name, value in (properties.get("DefaultRouteSettings") or {}).items()
                if name.startswith("Throttling")
            }
        throttles: dict[str, Any] = {}
        for properties in self.of_type(SERVERLESS_FUNCTION).values():
            for event in (properties.get("Events") or {}).values():
                if event.get("Type") != "HttpApi" or (event.get("Properties") or {}).get("Path") is None:
                    continue
                event_properties = event["Properties"]
                route = Route(str(event_properties.get("Method") or "ANY").upper(), str(event_properties["Path"]), "")
                own = event_properties.get("RouteSettings") or {}
                throttles[route.route_key] = defaults | {
                    name: value for name, value in own.items() if name.startswith("Throttling")
                }
        return throttles

    def cors_configuration(self) -> Any:
        """The ``CorsConfiguration`` of the template's HttpApi (unresolved), None without one.

        The local gateway serves every route on one host, so the HttpApis of the template (there is
        one) must not disagree about CORS."""
        configurations = [
            properties["CorsConfiguration"]
            for properties in self.of_type(HTTP_API).values()
            if properties.get("CorsConfiguration") not in (None, False)
        ]
        if any(configuration != configurations[0] for configuration in configurations[1:]):
            raise TemplateError("the HttpApis differ in CorsConfiguration: the local gateway serves them as one")
        return configurations[0] if configurations else None

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


# --- intrinsic functions -------------------------------------------------------------------------


@dataclass
class LocalResource:
    """What ``!Ref`` and ``!GetAtt`` of a resource give locally."""

    ref: str
    attributes: dict[str, str] = field(default_factory=dict)


class Resolver:
    """Evaluates the intrinsic functions of template values against local parameters and resources."""

    def __init__(
        self,
        template: Template,
        parameters: Mapping[str, Any],
        *,
        region: str,
        stack_name: str,
        resources: Mapping[str, LocalResource] | None = None,
    ) -> None:
        self.template = template
        self.parameters = parameters
        self.resources: dict[str, LocalResource] = dict(resources or {})
        self.pseudo = {
            "AWS::Region": region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::StackName": stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{region}:{ACCOUNT_ID}:stack/{stack_name}/local",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }
        self._functions: dict[str, Callable[[Any], Any]] = {
            "Ref": self._ref,
            "Fn::GetAtt": self._get_att,
            "Fn::Sub": self._sub,
            "Fn::Join": lambda args: str(self.resolve(args[0])).join(
                str(item) for item in self.resolve(args[1]) if item is not _NO_VALUE
            ),
            "Fn::If": self._if,
            "Fn::Select": lambda args: self.resolve(args[1])[int(self.resolve(args[0]))],
            "Fn::Split": lambda args: str(self.resolve(args[1])).split(str(self.resolve(args[0]))),
            "Fn::FindInMap": lambda args: self.template.mappings[self.resolve(args[0])][self.resolve(args[1])][
                self.resolve(args[2])
            ],
            "Fn::Equals": lambda args: str(self.resolve(args[0])) == str(self.resolve(args[1])),
            "Fn::Not": lambda args: not self.resolve(args[0]),
            "Fn::And": lambda args: all(self.resolve(item) for item in args),
            "Fn::Or": lambda args: any(self.resolve(item) for item in args),
            "Condition": lambda name: self.condition(str(name)),
        }

    def resolve(self, value: Any) -> Any:
        if isinstance(value, dict):
            if len(value) == 1:
                ((key, argument),) = value.items()
                if key in self._functions:
                    return self._functions[key](argument)
            resolved = {key: self.resolve(item) for key, item in value.items()}
            return {key: item for key, item in resolved.items() if item is not _NO_VALUE}
        if isinstance(value, list):
            return [item for item in (self.resolve(element) for element in value) if item is not _NO_VALUE]
        return value

    def environment(self, spec: FunctionSpec) -> dict[str, str]:
        """A function's variables as Lambda would see them (``AWS::NoValue`` leaves a variable out)."""
        resolved = self.resolve(spec.environment)
        return {name: _as_text(value) for name, value in resolved.items()}

    def condition(self, name: str) -> bool:
        if name not in self.template.conditions:
            raise TemplateError(f"unknown condition {name}")
        return bool(self.resolve(self.template.conditions[name]))

    def _ref(self, name: Any) -> Any:
        name = str(name)
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.resources:
            return self.resources[name].ref
        if name in self.template.resources:
            raise Unresolved(name)
        raise TemplateError(f"!Ref {name}: no such parameter or resource")

    def _get_att(self, argument: Any) -> str:
        logical_id, attribute = (self.resolve(part) for part in argument)
        if logical_id not in self.template.resources:
            raise TemplateError(f"!GetAtt {logical_id}.{attribute}: no such resource")
        local = self.resources.get(logical_id)
        if local is None:
            raise Unresolved(logical_id)
        if attribute not in local.attributes:
            raise TemplateError(f"!GetAtt {logical_id}.{attribute}: not available locally")
        return local.attributes[attribute]

    def _if(self, argument: Any) -> Any:
        name, when_true, when_false = argument
        return self.resolve(when_true if self.condition(str(name)) else when_false)

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else (argument[0], argument[1])
        values = {name: self.resolve(value) for name, value in variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in values:
                return _as_text(values[name])
            if "." in name:
                logical_id, attribute = name.split(".", 1)
                return _as_text(self._get_att([logical_id, attribute]))
            return _as_text(self._ref(name))

        return _SUB_VARIABLE.sub(replace, str(text)).replace("${!", "${")


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_as_text(item) for item in value)
    return str(value)
