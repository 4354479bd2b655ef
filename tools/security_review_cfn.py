"""The synthesized app as a reviewer reads it: every template, intrinsics turned into readable placeholders.

A value such as {"Fn::Join": ["", [{"Fn::GetAtt": ["StoreDataBucket005297F7", "Arn"]}, "/datasets/*"]]}
reads `<StoreDataBucket.Arn>/datasets/*`; cdk's weak cross-stack references (Fn::GetStackOutput) are
followed into the other stack and named with it: `<LlmFt-Data:StoreDataBucket.Arn>`.
"""

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

# cdk appends an 8-character hash of the construct path to every logical ID.
HASH_SUFFIX = re.compile(r"^(?P<base>.+?)[0-9A-F]{8}$")
SUB_VARIABLE = re.compile(r"\$\{(?P<name>[^}!][^}]*)\}")
WHOLE_SUBSTITUTION = re.compile(r"^\$\{(?P<name>[A-Za-z0-9_]+)\}$")
# Policy documents name keys and conditions too; they are read by the IAM section, not as settings.
POLICY_PROPERTIES = {
    "PolicyDocument",
    "KeyPolicy",
    "AssumeRolePolicyDocument",
    "Policies",
    "RepositoryPolicyText",
}


@dataclass(frozen=True)
class Resource:
    stack: str
    id: str
    type: str
    body: dict

    @property
    def props(self) -> dict:
        return self.body.get("Properties", {})

    @property
    def key(self) -> tuple[str, str]:
        return (self.stack, self.id)


def readable_names(logical_ids) -> dict[str, str]:
    """Logical ID -> the ID without cdk's hash, unless two resources of the stack would then share a name."""
    bases = {lid: (m["base"] if (m := HASH_SUFFIX.match(lid)) else lid) for lid in logical_ids}
    counts = Counter(bases.values())
    return {lid: base if counts[base] == 1 else lid for lid, base in bases.items()}


class App:
    """Every stack's template, by stack name."""

    def __init__(self, templates: dict[str, dict]):
        self.templates = templates
        # Every listing follows the deployment order (stack_order reads the templates just set).
        self.templates = {stack: templates[stack] for stack in self.stack_order()}
        self.names = {stack: readable_names(t.get("Resources", {})) for stack, t in templates.items()}

    @classmethod
    def load(cls, folder: Path) -> "App":
        files = sorted(folder.glob("*.template.json"))
        return cls({path.name.removesuffix(".template.json"): json.loads(path.read_text()) for path in files})

    def resources(self, *types: str) -> list[Resource]:
        return [
            Resource(stack, lid, body["Type"], body)
            for stack, template in self.templates.items()
            for lid, body in template.get("Resources", {}).items()
            if not types or body["Type"] in types
        ]

    def resource(self, key: tuple[str, str]) -> Resource | None:
        body = self.templates.get(key[0], {}).get("Resources", {}).get(key[1])
        return Resource(key[0], key[1], body["Type"], body) if body else None

    def is_resource(self, stack: str, lid: str) -> bool:
        return lid in self.templates.get(stack, {}).get("Resources", {})

    def name(self, key: tuple[str, str], home: str | None = None) -> str:
        """The readable name; qualified with its stack when read from another stack."""
        stack, lid = key
        name = self.names.get(stack, {}).get(lid, lid)
        return name if stack == home else f"{stack}:{name}"

    def _output(self, arg: dict) -> tuple[str, object] | None:
        output = self.templates.get(arg["StackName"], {}).get("Outputs", {}).get(arg["OutputName"])
        return (arg["StackName"], output["Value"]) if output else None

    def render(self, stack: str, value, home: str | None = None):
        """The value with every intrinsic function replaced by a readable placeholder string."""
        home = home or stack
        if isinstance(value, list):
            return [self.render(stack, item, home) for item in value]
        if not isinstance(value, dict):
            return value
        if not is_intrinsic(value):
            return {k: self.render(stack, v, home) for k, v in value.items()}
        fn, arg = next(iter(value.items()))
        if fn == "Ref":
            return f"<{self._ref_name(stack, arg, home)}>"
        if fn == "Fn::GetAtt":
            lid, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
            return f"<{self._ref_name(stack, lid, home)}.{self.text(stack, attribute, home)}>"
        if fn == "Fn::GetStackOutput":
            output = self._output(arg)
            return self.render(*output, home) if output else f"<{arg['StackName']}:{arg['OutputName']}>"
        if fn == "Fn::Join":
            rendered = self.render(stack, arg[1], home)
            return arg[0].join(map(str, rendered)) if isinstance(rendered, list) else f"<join {rendered}>"
        if fn == "Fn::Sub":
            return self._sub(stack, arg, home)
        if fn == "Fn::Select":
            items = self.render(stack, arg[1], home)
            if isinstance(items, list) and str(arg[0]).isdigit() and int(arg[0]) < len(items):
                return items[int(arg[0])]
            return f"<{str(items).strip('<>')}[{arg[0]}]>"
        if fn == "Fn::Split":
            return f"<{str(self.render(stack, arg[1], home)).strip('<>')} split by '{arg[0]}'>"
        if fn == "Fn::GetAZs":
            return "<AZs>"
        if fn == "Fn::FindInMap":
            path = [str(part).strip("<>") for part in self.render(stack, arg, home)]
            found = self.templates[stack].get("Mappings", {}).get(path[0], {}).get(path[1], {}).get(path[2])
            return found if isinstance(found, str) else f"<{path[0]}[{path[1]}].{path[2]}>"
        if fn in ("Fn::Base64", "Fn::ImportValue"):
            inner = self.render(stack, arg, home)
            return inner if fn == "Fn::Base64" else f"<import {inner}>"
        return f"<{fn} {json.dumps(self.render(stack, arg, home))}>"

    def _ref_name(self, stack: str, name: str, home: str) -> str:
        return self.name((stack, name), home) if self.is_resource(stack, name) else name

    def _sub(self, stack: str, arg, home: str) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else arg

        def one(match: re.Match) -> str:
            name = match["name"]
            if name in variables:
                return str(self.render(stack, variables[name], home))
            lid, _, attribute = name.partition(".")
            return f"<{self._ref_name(stack, lid, home)}{'.' + attribute if attribute else ''}>"

        return SUB_VARIABLE.sub(one, text).replace("${!", "${")

    def text(self, stack: str, value, home: str | None = None) -> str:
        """The rendered value as one line of text."""
        rendered = self.render(stack, value, home)
        if isinstance(rendered, str):
            return rendered
        if isinstance(rendered, list):
            return ", ".join(map(str, rendered))
        return json.dumps(rendered, sort_keys=True)

    def target(self, stack: str, value) -> tuple[str, str] | None:
        """The resource a value stands for, when it is a plain Ref, GetAtt or cross-stack reference."""
        if not isinstance(value, dict) or len(value) != 1:
            return None
        fn, arg = next(iter(value.items()))
        if fn == "Ref" and isinstance(arg, str) and self.is_resource(stack, arg):
            return (stack, arg)
        if fn == "Fn::GetAtt":
            lid = arg[0] if isinstance(arg, list) else arg.split(".", 1)[0]
            return (stack, lid) if self.is_resource(stack, lid) else None
        if fn == "Fn::GetStackOutput":
            output = self._output(arg)
            return self.target(*output) if output else None
        return None

    def refs(self, stack: str, value) -> set[tuple[str, str]]:
        """Every resource the value references, wherever it sits in the value."""
        found: set[tuple[str, str]] = set()
        if isinstance(value, list):
            for item in value:
                found |= self.refs(stack, item)
        elif isinstance(value, dict):
            if (direct := self.target(stack, value)) is not None:
                return {direct}
            if "Fn::GetStackOutput" in value and (output := self._output(value["Fn::GetStackOutput"])):
                return self.refs(*output)
            if "Fn::Sub" in value:
                arg = value["Fn::Sub"]
                text, variables = (arg, {}) if isinstance(arg, str) else arg
                for match in SUB_VARIABLE.finditer(text):
                    lid = match["name"].split(".", 1)[0]
                    if match["name"] not in variables and self.is_resource(stack, lid):
                        found.add((stack, lid))
                return found | self.refs(stack, variables)
            for item in value.values():
                found |= self.refs(stack, item)
        return found

    def expanded(self, resource: Resource) -> dict:
        """The resource's properties; a state machine's definition parsed, its ${substitutions} filled in."""
        props = resource.props
        if resource.type != "AWS::StepFunctions::StateMachine" or "DefinitionString" not in props:
            return props
        substitutions = props.get("DefinitionSubstitutions", {})
        try:
            definition = json.loads(self.text(resource.stack, props["DefinitionString"]))
        except ValueError:
            return props

        def fill(node):
            if isinstance(node, list):
                return [fill(item) for item in node]
            if isinstance(node, dict):
                return {k: fill(v) for k, v in node.items()}
            if isinstance(node, str):
                # A whole-value substitution keeps its template value, so its references stay traceable.
                if (match := WHOLE_SUBSTITUTION.match(node)) and match["name"] in substitutions:
                    return substitutions[match["name"]]
                return SUB_VARIABLE.sub(
                    lambda m: (
                        self.text(resource.stack, substitutions[m["name"]])
                        if m["name"] in substitutions
                        else m[0]
                    ),
                    node,
                )
            return node

        return {**props, "DefinitionString": fill(definition)}

    def stack_order(self) -> list[str]:
        """Stacks in deployment order: each after the stacks it reads outputs from (ties by name)."""
        needs = {stack: _stacks_read(template) - {stack} for stack, template in self.templates.items()}
        order: list[str] = []
        while len(order) < len(needs):
            ready = sorted(s for s, deps in needs.items() if s not in order and deps <= set(order))
            order.append(ready[0] if ready else sorted(set(needs) - set(order))[0])
        return order

    @cached_property
    def references(self) -> dict[tuple[str, str], set[tuple[str, str]]]:
        """Resource -> every other resource its properties reference (cross-stack references followed)."""
        return {res.key: self.refs(res.stack, res.props) - {res.key} for res in self.resources()}

    @cached_property
    def referenced_by(self) -> dict[tuple[str, str], set[tuple[str, str]]]:
        back = defaultdict(set)
        for source, targets in self.references.items():
            for target in targets:
                back[target].add(source)
        return back


def _stacks_read(node) -> set[str]:
    """Stacks whose outputs a template reads (cdk's weak references)."""
    if isinstance(node, list):
        return set().union(*map(_stacks_read, node)) if node else set()
    if isinstance(node, dict):
        found = {node["Fn::GetStackOutput"]["StackName"]} if "Fn::GetStackOutput" in node else set()
        return found.union(*map(_stacks_read, node.values()))
    return set()


def find_settings(node, pattern: re.Pattern, path: str = "") -> list[tuple[str, object]]:
    """(property path, value) of every key matching `pattern`, outside policy documents."""
    found = []
    if isinstance(node, dict):
        if is_intrinsic(node):
            return found
        for key, value in node.items():
            if key in POLICY_PROPERTIES:
                continue
            here = f"{path}.{key}" if path else key
            if pattern.search(key) and (isinstance(value, str) or is_intrinsic(value)):
                found.append((here, value))
            else:
                found += find_settings(value, pattern, here)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            found += find_settings(item, pattern, f"{path}[{index}]")
    return found


def is_intrinsic(value) -> bool:
    """A one-key object naming a CloudFormation function: Ref or Fn::*."""
    if not isinstance(value, dict) or len(value) != 1:
        return False
    function = next(iter(value))
    return function == "Ref" or function.startswith("Fn::")
