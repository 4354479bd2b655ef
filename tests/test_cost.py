"""`make cost`: the idle cost of the configured deployment, from the one price table the README shows."""

import json
import re

import pytest

from project_config import load_config
from tests.conftest import ROOT, project_context
from tools import cost

README = (ROOT / "README.md").read_text()
COSTS = README[README.index("## Costs and teardown") : README.index("## Layout")]


def priced(config) -> dict[str, float]:
    return {line.item: line.monthly_usd for line in cost.idle_lines(config) if line.monthly_usd is not None}


def test_the_default_deployment_idles_at_nat_endpoints_and_the_key():
    lines = cost.idle_lines(load_config(project_context()))
    assert [line.monthly_usd for line in lines] == [1.00, 32.85, 3.65, 87.60]
    assert round(sum(line.monthly_usd for line in lines), 2) == 125.10


def test_the_readme_states_the_tables_figures():
    total = sum(priced(load_config(project_context())).values())
    assert f"${total:,.2f} a month" in COSTS, "the README's idle total is not the tool's"
    phrases = {
        "nat_gateway": "NAT gateway: ${:g} an hour",
        "public_ipv4": "public IPv4 address: ${:g} an hour",
        "interface_endpoint": "interface endpoints: ${:g} an hour per endpoint per zone",
        "kms_key": "the project KMS key: ${:g}/month",
    }
    assert set(phrases) == set(cost.PRICES)
    for key, phrase in phrases.items():
        assert phrase.format(cost.PRICES[key].usd) in COSTS, key
    allowed = load_config(project_context()).training.allowed_instance_types
    for instance_type in allowed:
        row = re.search(rf"\| {re.escape(instance_type)} \| (\$([0-9.]+)|not priced)", COSTS)
        assert row, f"{instance_type} has no row in the training table"
        hourly = cost.INSTANCE_HOURLY.get(instance_type)
        assert (float(row[2]) if row[2] else None) == hourly, instance_type
    for name in cost.SOURCES:
        assert f"[{name}]" in COSTS, f"source [{name}] is not named in the README"
    assert cost.PRICES_READ in COSTS and cost.PRICE_REGION in COSTS


def test_the_configuration_moves_the_idle_cost():
    no_nat = load_config(project_context({"network": {"nat_gateways": 0}}))
    assert sum(priced(no_nat).values()) == pytest.approx(125.10 - 36.50)
    two_nat = load_config(project_context({"network": {"nat_gateways": 2}}))
    assert sum(priced(two_nat).values()) == pytest.approx(125.10 + 36.50)


def test_an_endpoint_kept_up_is_an_instance_around_the_clock_and_scale_to_zero_is_not():
    always = load_config(project_context({"inference": {"enabled": True, "base_model": "models/m/"}}))
    (line,) = [line for line in cost.idle_lines(always) if line.stack == "LlmFt-Inference"]
    assert line.monthly_usd == pytest.approx(1.515 * 730)
    to_zero = load_config(
        project_context({"inference": {"enabled": True, "base_model": "models/m/", "min_copies": 0}})
    )
    assert not [line for line in cost.idle_lines(to_zero) if line.stack == "LlmFt-Inference"]


def test_what_has_no_price_in_the_table_is_said_not_priced_rather_than_zero():
    config = load_config(project_context({"hyperpod": {"enabled": True}, "notebook": {"enabled": True}}))
    unpriced = [line for line in cost.idle_lines(config) if line.monthly_usd is None]
    assert {line.stack for line in unpriced} == {"LlmFt-HyperPod", "LlmFt-Notebook"}
    text = cost.report(config)
    assert "not priced" in text and "4 line(s) not priced here" in text


def test_make_cost_prints_the_report_for_cdk_json(capsys):
    assert cost.main([]) == 0
    out = capsys.readouterr().out
    assert "$    125.10  total of the priced lines" in out
    assert "ml.g5.2xlarge        $   1.515 per instance-hour" in out


def test_a_refused_configuration_is_named(tmp_path, capsys):
    path = tmp_path / "cdk.json"
    path.write_text(json.dumps({"context": {"llmft": {"network": {"nat_gateways": 3}}}}))
    assert cost.main(["--cdk-json", str(path)]) == 2
    assert "llmft.network.nat_gateways = 3" in capsys.readouterr().err
