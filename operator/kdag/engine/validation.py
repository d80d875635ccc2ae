"""Everything wrong with a workflow or a run's params, all at once, each naming its field.

The API server's schema and CEL rules reject what they cheaply can; this catches the rest
(cycles, template references, CEL syntax, quantities, sizes) before any Job is created.
What depends on where the run is and who the operator is (a node borrowing the operator's
own ServiceAccount) is checked separately, by `borrowed_account_problems`.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterator, Mapping
from typing import Any

from croniter import croniter
from pydantic import BaseModel

from kdag.api import NodeSpec, WorkflowSpec
from kdag.engine import budget, conditions, templating
from kdag.engine.defaults import effective_node
from kdag.engine.graph import build_graph, structure_problems
from kdag.engine.model import DEFAULT_OUTPUT_BUDGET, ServiceAccountRef
from kdag.engine.problems import Problem
from kdag.engine.quantities import is_quantity

DEFAULT_MAX_NODES = 10_000


def node_count(workflow: WorkflowSpec) -> int:
    """Nodes after static fan-out; a dynamic fan-out counts once until it expands."""
    return sum(len(n.for_each) if n.for_each is not None else 1 for n in workflow.all_nodes)


def validate_workflow(
    workflow: WorkflowSpec,
    *,
    max_nodes: int = DEFAULT_MAX_NODES,
    output_budget: int = DEFAULT_OUTPUT_BUDGET,
) -> list[Problem]:
    """All problems of the workflow; an empty list means it can run."""
    problems = structure_problems(workflow)
    problems.extend(bound_problems(workflow))
    problems.extend(_param_problems(workflow))
    count = node_count(workflow)
    if count > max_nodes:
        problems.append(
            Problem("nodes", f"{count} nodes after fan-out, more than the maximum of {max_nodes}")
        )
    else:
        problems.extend(_size_problems(workflow, count, output_budget))
    graph = None if problems_block_graph(problems) else build_graph(workflow)
    ancestors = graph.ancestor_sets() if graph is not None else None
    declared = {p.name for p in workflow.params or []}
    main_names = {n.name for n in workflow.nodes}
    for section, nodes in (("nodes", workflow.nodes), ("finally", workflow.finally_nodes)):
        for node in nodes:
            where = f"{section}[{node.name}]"
            eff = effective_node(workflow, node)
            problems.extend(_node_problems(where, section, node, eff))
            # With a broken graph, upstream references cannot be checked (None), the rest can.
            visible = None if ancestors is None else set(ancestors[node.name])
            if visible is not None and section == "finally":
                visible |= main_names
            problems.extend(_template_problems(where, eff, declared, visible))
    if workflow.schedule is not None:
        problems.extend(_schedule_problems(workflow))
    return sorted(set(problems), key=lambda p: (p.path, p.message))


def _size_problems(workflow: WorkflowSpec, count: int, output_budget: int) -> Iterator[Problem]:
    """A run whose status could outgrow what the API server stores would stop being
    recorded mid-run: refuse it before it starts."""
    size = budget.worst_case_bytes(workflow, output_budget)
    if size <= budget.MAX_RUN_OBJECT_BYTES:
        return
    widest = max(
        (n for n in workflow.all_nodes if n.for_each is not None),
        key=lambda n: len(n.for_each or []),
        default=None,
    )
    section = "finally" if widest is not None and widest not in workflow.nodes else "nodes"
    path = f"{section}[{widest.name}].forEach" if widest is not None else "nodes"
    outputs = min(output_budget, count * budget.TERMINATION_MESSAGE_BYTES)
    yield Problem(
        path,
        f"a run of {count} nodes could reach about {size // 1024} KiB ({outputs // 1024} KiB "
        f"of it outputs), more than the {budget.MAX_RUN_OBJECT_BYTES // 1024} KiB a run object "
        "may take: fan out over fewer items, split the workflow, or lower the operator's "
        "--max-run-output-bytes",
    )


def bound_problems(model: BaseModel, path: str = "") -> Iterator[Problem]:
    """The schema's numeric bounds, checked again on the model.

    pydantic and the CRD enforce them on input; a model built without validation (or a value
    that slipped past them some other way) must still make the run Invalid, naming the field,
    rather than overflow the time arithmetic on every pass.
    """
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        where = f"{path}.{info.alias or _camel(name)}" if path else (info.alias or _camel(name))
        if isinstance(value, BaseModel):
            yield from bound_problems(value, where)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from bound_problems(item, f"{where}[{getattr(item, 'name', i)}]")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            for bound in info.metadata:
                if (most := getattr(bound, "le", None)) is not None and value > most:
                    yield Problem(where, f"{value} is more than the maximum of {most}")
                if (least := getattr(bound, "ge", None)) is not None and value < least:
                    yield Problem(where, f"{value} is less than the minimum of {least}")


def problems_block_graph(problems: list[Problem]) -> bool:
    return any("dependsOn" in p.path or p.path.endswith(".name") for p in problems)


def _param_problems(workflow: WorkflowSpec) -> Iterator[Problem]:
    seen: set[str] = set()
    for i, param in enumerate(workflow.params or []):
        if param.name in seen:
            yield Problem(f"params[{i}].name", f"duplicate param {param.name!r}")
        seen.add(param.name)
        if param.enum is not None and param.default is not None and param.default not in param.enum:
            yield Problem(
                f"params[{param.name}].default",
                f"{param.default!r} is not one of {param.enum}",
            )


def _node_problems(where: str, section: str, raw: NodeSpec, node: NodeSpec) -> Iterator[Problem]:
    """`raw` as written, `node` with defaults merged in."""
    if raw.approval is not None:
        if section == "finally":
            yield Problem(f"{where}.approval", "finally nodes cannot be approval gates")
        for name in ("image", "command", "args", "for_each", "for_each_from"):
            if getattr(raw, name) is not None:
                yield Problem(f"{where}.{_camel(name)}", "an approval gate runs no container")
    elif not node.image:
        yield Problem(f"{where}.image", "no image: set it on the node or in defaults.image")
    if node.for_each is not None and node.for_each_from is not None:
        yield Problem(f"{where}.forEach", "set forEach or forEachFrom, not both")
    if node.when is not None and (error := conditions.compile_error(node.when)):
        yield Problem(f"{where}.when", error)
    if node.resources is not None:
        for kind in ("requests", "limits"):
            for resource, quantity in (getattr(node.resources, kind) or {}).items():
                if not is_quantity(quantity):
                    yield Problem(
                        f"{where}.resources.{kind}.{resource}",
                        f"{quantity!r} is not a valid quantity (e.g. 100m, 1, 64Mi, 2Gi)",
                    )
    if node.pod_template and "containers" in node.pod_template:
        yield Problem(
            f"{where}.podTemplate.containers",
            "set image, command, args, env, resources and securityContext on the node instead",
        )


# The pod fields naming its ServiceAccount, as the API server reads them: the deprecated
# `serviceAccount` counts only when `serviceAccountName` is empty; neither means "default".
_ACCOUNT_FIELDS = ("serviceAccountName", "serviceAccount")
DEFAULT_SERVICE_ACCOUNT = "default"


def pod_service_account(pod_spec: Mapping[str, Any] | None) -> tuple[str, str | None]:
    """The ServiceAccount a pod with this (partial) spec runs as, and the field naming it
    (None: no field does, so the namespace's `default`)."""
    for field in _ACCOUNT_FIELDS:
        value = (pod_spec or {}).get(field)
        if isinstance(value, str) and value:
            return value, field
    return DEFAULT_SERVICE_ACCOUNT, None


def runs_as(account: ServiceAccountRef, namespace: str, pod_spec: Mapping[str, Any] | None) -> bool:
    """Whether a pod with this spec, in `namespace`, would run as (and get the token of)
    `account`."""
    return namespace == account.namespace and pod_service_account(pod_spec)[0] == account.name


def borrowed_account_problems(
    workflow: WorkflowSpec, namespace: str, operator_account: ServiceAccountRef | None
) -> list[Problem]:
    """Nodes whose pods, run in `namespace`, would run as the operator's own ServiceAccount
    and so hold its token: a privilege escalation for whoever may create runs there.

    Only the operator's namespace can hold that account; elsewhere an account of the same
    name is somebody else's. Each problem names the field to change: the node's, the
    workflow defaults' (once, however many nodes inherit it), or, when nothing names an
    account and the operator itself runs as `default`, the node's unset one.
    """
    if operator_account is None or namespace != operator_account.namespace:
        return []
    defaults = (workflow.defaults.pod_template if workflow.defaults else None) or {}
    mine = f"the operator's own ServiceAccount ({operator_account})"
    problems: set[Problem] = set()
    for section, nodes in (("nodes", workflow.nodes), ("finally", workflow.finally_nodes)):
        for node in nodes:
            if node.approval is not None:
                continue  # a gate runs no pod
            own = node.pod_template or {}
            # Top-level keys merge as `effective_node` merges them: the node's own wins.
            account, field = pod_service_account({**defaults, **own})
            if account != operator_account.name:
                continue
            if field is None:
                problems.add(
                    Problem(
                        f"{section}[{node.name}].podTemplate.serviceAccountName",
                        f"not set, so the pod would run as {account!r}, which is {mine}: "
                        "name another ServiceAccount here or in defaults.podTemplate",
                    )
                )
                continue
            where = f"{section}[{node.name}]" if field in own else "defaults"
            problems.add(
                Problem(
                    f"{where}.podTemplate.{field}",
                    f"{account!r} is {mine}: a node may not run with the operator's "
                    "permissions; name another ServiceAccount",
                )
            )
    return sorted(problems)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _template_fields(node: NodeSpec) -> Iterator[tuple[str, str]]:
    for i, text in enumerate(node.command or []):
        yield f"command[{i}]", text
    for i, text in enumerate(node.args or []):
        yield f"args[{i}]", text
    for env in node.env or []:
        if env.value is not None:
            yield f"env[{env.name}].value", env.value
    if node.for_each_from is not None:
        yield "forEachFrom", node.for_each_from


def _template_problems(
    where: str, node: NodeSpec, declared: set[str], visible: set[str] | None
) -> Iterator[Problem]:
    for field, text in _template_fields(node):
        try:
            refs = templating.references(text)
        except templating.TemplateError as exc:
            yield Problem(f"{where}.{field}", str(exc))
            continue
        for ref in refs:
            if ref.kind == "param" and ref.name not in declared:
                yield Problem(f"{where}.{field}", f"{{{{ {ref.text} }}}}: no param {ref.name!r}")
            elif (
                ref.kind in ("output", "phase") and visible is not None and ref.name not in visible
            ):
                yield Problem(
                    f"{where}.{field}",
                    f"{{{{ {ref.text} }}}}: {ref.name!r} is not an upstream node of "
                    f"{node.name!r} (add it to dependsOn)",
                )
            elif ref.kind == "item" and (not node.fans_out or field == "forEachFrom"):
                yield Problem(
                    f"{where}.{field}", "{{ item }} is only defined in a node with forEach"
                )
    if node.for_each_from is not None:
        try:
            if not templating.references(node.for_each_from):
                yield Problem(
                    f"{where}.forEachFrom",
                    "must reference an upstream output, e.g. {{ nodes.list.outputs.items }}",
                )
        except templating.TemplateError:
            pass  # already reported above


def _schedule_problems(workflow: WorkflowSpec) -> Iterator[Problem]:
    schedule = workflow.schedule
    assert schedule is not None
    if not croniter.is_valid(schedule.cron) or len(schedule.cron.split()) != 5:
        yield Problem("schedule.cron", f"{schedule.cron!r} is not a five-field cron expression")
    if schedule.timezone is not None:
        try:
            zoneinfo.ZoneInfo(schedule.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            yield Problem("schedule.timezone", f"unknown time zone {schedule.timezone!r}")
    if schedule.params:
        _, problems = resolve_params(workflow, schedule.params, path="schedule.params")
        yield from problems


def resolve_params(
    workflow: WorkflowSpec, given: Mapping[str, str] | None, *, path: str = "spec.params"
) -> tuple[dict[str, str], list[Problem]]:
    """The run's param values with defaults applied, and what is wrong with them."""
    declared = {p.name: p for p in workflow.params or []}
    given = dict(given or {})
    problems = [
        Problem(f"{path}.{name}", f"the workflow declares no param {name!r}")
        for name in given
        if name not in declared
    ]
    values: dict[str, str] = {}
    for name, param in declared.items():
        value = given.get(name, param.default)
        if value is None:
            problems.append(Problem(f"{path}.{name}", "required param not set (it has no default)"))
            continue
        if param.enum is not None and value not in param.enum:
            problems.append(Problem(f"{path}.{name}", f"{value!r} is not one of {param.enum}"))
        values[name] = value
    return values, problems
