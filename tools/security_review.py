"""The security review of every stack, optional ones included, written by `make synth`.

Usage: python -m tools.security_review [cdk.out]   (from the repository root)

Synthesizes the app a second time, in this process and offline, with every optional stack switched on
(cdk.json's configuration otherwise) into cdk.out/security-review/, then writes README.md and
architecture.png there from those templates and cdk-nag reports. Exit 1 if it cannot write the review.
"""

import copy
import json
import shutil
import sys
from collections import Counter
from pathlib import Path

from tools import security_review_diagram as diagram
from tools import security_review_iam as iam
from tools import security_review_nag as nag
from tools import security_review_network as network
from tools import security_review_stores as stores
from tools.nag_summary import load_packs
from tools.security_review_cfn import App
from tools.security_review_md import code, table

ROOT = Path(__file__).resolve().parent.parent
REVIEW_FOLDER = "security-review"
DIAGRAM_FILE = "architecture.png"
CONTEXT_KEY = "llmft"
# Every optional stack and optional part switched on; the same as tests/conftest.py's FULL_TEST_CONFIG
# (tests/test_security_review.py holds them equal).
ALL_STACKS: dict = {
    "hyperpod": {"enabled": True},
    # The endpoint needs a model to serve: named before it is switched on (settings apply in order).
    "inference": {"base_model": "models/base-model/", "enabled": True},
    "notebook": {"enabled": True},
    "training": {"hf_token_secret_name": "llmft/hf-token", "notification_email": "ml-team@example.com"},
}


def cdk_context(root: Path = ROOT) -> dict:
    """The context `cdk synth` reads: cdk.json's, with cdk.context.json's lookups if there are any."""
    context = json.loads((root / "cdk.json").read_text())["context"]
    lookups = root / "cdk.context.json"
    return {**json.loads(lookups.read_text()), **context} if lookups.exists() else context


def review_config(llmft: dict, validate) -> tuple[dict, list[str], list[str]]:
    """cdk.json's llmft object with every ALL_STACKS setting it leaves off switched on.

    Returns the object, the settings switched on, and those refused by `validate` (with its message):
    with `network.nat_gateways` 0, for example, the notebook cannot be enabled.
    """
    merged = copy.deepcopy(llmft)
    applied, refused = [], []
    for section, settings in ALL_STACKS.items():
        for key, value in settings.items():
            if (merged.get(section) or {}).get(key):
                continue  # cdk.json already has it on (or its own value): review what it deploys
            candidate = copy.deepcopy(merged)
            candidate[section] = {**(candidate.get(section) or {}), key: value}
            setting = f"{section}.{key} = {json.dumps(value)}"
            try:
                validate(candidate)
            except ValueError as error:
                refused.append(f"{setting}: {error}")
                continue
            merged = candidate
            applied.append(setting)
    return merged, applied, refused


def synthesize(out_dir: Path, context: dict) -> None:
    """`cdk synth` in this process: templates and cdk-nag reports into out_dir, no AWS call."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    # isort: off
    # app first: it silences jsii's Node version banners before aws_cdk starts its Node process.
    import app as cdk_app
    import aws_cdk as cdk
    from project_config import load_config

    # isort: on

    app = cdk.App(context=context, outdir=str(out_dir), analytics_reporting=False)
    cdk_app.build(app, load_config(context[CONTEXT_KEY]))
    app.synth()


def render(
    app: App, reports: dict, image_note: str | None, applied: list[str], refused: list[str]
) -> tuple[str, dict[str, int]]:
    """The review's Markdown and the counts it reports."""
    role_rows = iam.roles(app)
    policies = iam.resource_policies(app)
    store_rows = stores.stores(app)
    settings = stores.key_settings(app)
    net = network.network(app)
    g = diagram.graph(app)
    stacks = app.stack_order()
    suppressed = Counter(s.pack for s in nag.suppressions(reports))
    counts = {
        "stacks": len(stacks),
        "roles": len(role_rows),
        "role statements": sum(len(r.statements) for r in role_rows),
        "resource policy statements": sum(len(p.statements) for p in policies),
        "data stores": len(store_rows),
        "security groups": len(net.groups),
        "groups with egress to anywhere": sum(any(r.internet for r in g.egress) for g in net.groups),
        "VPC endpoints": len(net.endpoints),
        "open findings": len(nag.open_findings(reports)),
        **{f"suppressions ({pack})": suppressed[pack] for pack in sorted(reports)},
    }
    out = [
        "# Security review of every stack",
        "",
        "Written by `tools/security_review.py` at each `make synth`; do not edit, it is regenerated. "
        "The reader's guide is `docs/security-review.md`.",
        "",
        "## How to read this",
        "",
        "- Everything below is read from the CloudFormation templates and cdk-nag reports beside this file "
        "(`*.template.json`, `*-NagReport.json`): a second synthesis of the app with every optional stack "
        "switched on, so that stacks which `cdk.json` leaves off are reviewed too.",
        "- Configuration: `cdk.json`'s, with "
        + (", ".join(code(a, False) for a in applied) if applied else "nothing")
        + " switched on for this review."
        + (" Refused: " + "; ".join(code(r, False) for r in refused) + "." if refused else ""),
        "- `<Name.Attr>` is a reference to a resource of the same stack (its logical ID without cdk's hash), "
        "`<Stack:Name.Attr>` one to another stack's resource, `<AWS::Region>` a pseudo parameter.",
        "- Start with the summary and the diagram; then IAM (who may do what, on what, when), resource "
        "policies, data stores (what is kept where, under which key), network (what reaches what, and the "
        "internet), and cdk-nag (what each pack checked, what was waived and why).",
        "",
        "## Summary",
        "",
        f"Stacks, in deployment order: {', '.join(stacks)}.",
        "",
    ]
    out += table(["what", "count"], [[what, count] for what, count in counts.items()])
    out += ["", "## Architecture diagram", ""]
    if image_note is None:
        out.append(f"![Architecture: one column per stack]({DIAGRAM_FILE})")
    else:
        out.append(f"Diagram not drawn because {image_note}; the references it would show are listed below.")
    out += [
        "",
        f"From the templates: {len(g.nodes)} resources (one column per stack) and {len(g.edges)} references "
        "between them: IAM grant (a role's Allow statement names the resource), runs as (a resource names "
        "the role), network (subnet, group, rule, route), encrypted by (a KMS key property), references "
        "(any other property, e.g. an EventBridge rule's target).",
        "",
        "<details><summary>Every reference in the diagram</summary>",
        "",
    ]
    out += [
        f"- {app.name(e.source)} -> {app.name(e.target)} ({e.kind})"
        for e in sorted(g.edges, key=lambda e: (e.source, e.target, e.kind))
    ]
    out += ["", "</details>", ""]
    out += iam.section(role_rows, policies)
    out += stores.section(store_rows, settings, stores.secrets(app))
    out += network.section(net)
    out += nag.section(reports, stacks)
    return "\n".join(out) + "\n", counts


def write_review(folder: Path, applied: list[str], refused: list[str]) -> dict[str, int]:
    """Reads the templates and reports in `folder`, writes README.md and the diagram there."""
    app = App.load(folder)
    image_note = diagram.draw(diagram.graph(app), app.stack_order(), folder / DIAGRAM_FILE)
    text, counts = render(app, load_packs(folder), image_note, applied, refused)
    (folder / "README.md").write_text(text)
    return counts


def main(argv: list[str]) -> int:
    folder = Path(argv[1] if len(argv) > 1 else "cdk.out") / REVIEW_FOLDER
    try:
        # Ours alone: cleared so that no template of an earlier run is read.
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    except OSError as error:
        print(f"security review: cannot write {folder}: {error}", file=sys.stderr)
        return 1
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from project_config import load_config

    context = cdk_context()
    llmft, applied, refused = review_config(context[CONTEXT_KEY], load_config)
    synthesize(folder, {**context, CONTEXT_KEY: llmft})
    try:
        counts = write_review(folder, applied, refused)
    except OSError as error:
        print(f"security review: cannot write the review in {folder}: {error}", file=sys.stderr)
        return 1
    print(f"security review: {', '.join(f'{v} {k}' for k, v in counts.items())}; in {folder / 'README.md'}")
    for setting in refused:
        print(f"security review: not reviewed, refused by the configuration: {setting}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
