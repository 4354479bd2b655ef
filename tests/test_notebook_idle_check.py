"""The notebook's idle check: the pure decision, the command around it, a run against a Jupyter stand-in."""

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from constructs.llmft_notebook import LIFECYCLE_DIR

SCRIPT = LIFECYCLE_DIR / "idle_check.py"
_spec = importlib.util.spec_from_file_location("llmft_idle_check", SCRIPT)
idle_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(idle_check)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
STARTED = NOW - timedelta(hours=5)


def stamp(minutes_ago: float) -> str:
    """A Jupyter-style timestamp this many minutes before NOW."""
    return (NOW - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def kernel(minutes_ago: float, state: str = "idle") -> dict:
    return {"id": "k", "name": "llamafactory", "execution_state": state, "last_activity": stamp(minutes_ago)}


def decide(kernels=(), terminals=(), *, started_at=STARTED, idle_minutes=60, install_running=False):
    return idle_check.decide(
        kernels=list(kernels),
        terminals=list(terminals),
        now=NOW,
        started_at=started_at,
        idle_minutes=idle_minutes,
        install_running=install_running,
    )


@pytest.mark.parametrize(
    ("case", "kwargs", "stop"),
    [
        ("kernel idle past the limit", {"kernels": [kernel(61)]}, True),
        ("kernel idle exactly the limit", {"kernels": [kernel(60)]}, True),
        ("kernel active within the limit", {"kernels": [kernel(59)]}, False),
        ("newest of several kernels counts", {"kernels": [kernel(300), kernel(10)]}, False),
        ("busy kernel keeps it up however old", {"kernels": [kernel(600, state="busy")]}, False),
        (
            "terminal output counts as activity",
            {"kernels": [kernel(300)], "terminals": [{"name": "1", "last_activity": stamp(5)}]},
            False,
        ),
        ("no kernels, started long ago", {}, True),
        ("no kernels, started recently", {"started_at": NOW - timedelta(minutes=20)}, False),
        (
            "activity before this start does not count",
            {"kernels": [kernel(600)], "started_at": NOW - timedelta(minutes=30)},
            False,
        ),
        ("limit 0 switches auto-stop off", {"kernels": [kernel(6000)], "idle_minutes": 0}, False),
        ("environment install still running", {"install_running": True}, False),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_decision(case, kwargs, stop):
    should_stop, why = decide(**kwargs)
    assert should_stop is stop, f"{case}: got {should_stop} ({why})"
    assert why, "every decision says why"


def test_the_reason_names_the_idle_time_and_the_limit():
    assert decide(kernels=[kernel(75)])[1].startswith("idle for 75 min (limit 60)")
    assert decide(kernels=[kernel(600, state="busy")])[1] == "busy kernels: llamafactory"


def test_jupyter_timestamps_parse_as_utc():
    assert idle_check.parse_time("2026-11-27T11:00:00.123456Z") == datetime(
        2026, 11, 27, 11, 0, 0, 123456, UTC
    )


def state_dir(tmp_path: Path, started: datetime = STARTED, install_pid: int | None = None) -> Path:
    (tmp_path / "started-at").write_text(f"{int(started.timestamp())}\n")
    if install_pid is not None:
        (tmp_path / "install.pid").write_text(f"{install_pid}\n")
    return tmp_path


def run_main(tmp_path, responses, **state):
    stops = []
    argv = [
        "--idle-minutes",
        "60",
        "--notebook-name",
        "nb",
        "--region",
        "eu-west-1",
        "--state-dir",
        str(state_dir(tmp_path, **state)),
    ]

    def fetch(url):
        answer = responses[url.rsplit("/", 1)[1]]
        if isinstance(answer, Exception):
            raise answer
        return answer

    code = idle_check.main(argv, fetch=fetch, stop=lambda *args: stops.append(args), now=NOW)
    return code, stops


def test_main_stops_an_idle_instance_by_name_and_region(tmp_path, capsys):
    code, stops = run_main(tmp_path, {"kernels": [kernel(90)], "terminals": []})
    assert code == 0 and stops == [("aws", "eu-west-1", "nb")]
    assert "stopping nb: idle for 90 min" in capsys.readouterr().out


def test_main_keeps_an_active_instance(tmp_path):
    assert run_main(tmp_path, {"kernels": [kernel(5)], "terminals": []}) == (0, [])


def test_main_never_stops_when_jupyter_cannot_be_reached(tmp_path, capsys):
    code, stops = run_main(tmp_path, {"kernels": OSError("connection refused"), "terminals": []})
    assert (code, stops) == (0, []), "a failed look at Jupyter must not stop the instance"
    assert "Jupyter not reachable" in capsys.readouterr().out


def test_main_counts_idle_time_from_the_recorded_start(tmp_path):
    assert run_main(tmp_path, {"kernels": [], "terminals": []}, started=NOW - timedelta(minutes=10)) == (
        0,
        [],
    )


def test_main_waits_for_a_running_install(tmp_path):
    from tests.test_notebook_lifecycle import install_stand_in

    with install_stand_in() as pid:
        code, stops = run_main(tmp_path, {"kernels": [], "terminals": []}, install_pid=pid)
    assert (code, stops) == (0, []), "the install is running: keep the instance"


def test_a_stale_install_pid_does_not_keep_the_instance_up(tmp_path):
    code, stops = run_main(tmp_path, {"kernels": [], "terminals": []}, install_pid=os.getpid())
    assert stops == [("aws", "eu-west-1", "nb")], "a reused pid of another program is not the install"


@contextlib.contextmanager
def jupyter_stand_in(kernels: list, terminals: list):
    """Serves /api/kernels and /api/terminals on localhost over HTTP; yields the base URL."""
    answers = {"/api/kernels": kernels, "/api/terminals": terminals}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the name http.server calls
            body = json.dumps(answers[self.path]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_script_runs_standalone_and_calls_the_aws_cli(tmp_path):
    log = tmp_path / "aws.log"
    aws = tmp_path / "aws"
    aws.write_text(f'#!/bin/bash\necho "$@" >>{log}\n')
    aws.chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    started = datetime.now(UTC) - timedelta(hours=3)
    old = (started - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    with jupyter_stand_in([{"name": "py", "execution_state": "idle", "last_activity": old}], []) as url:
        result = subprocess.run(
            [
                sys.executable,
                str(SCRIPT),
                "--idle-minutes",
                "60",
                "--notebook-name",
                "nb",
                "--region",
                "us-east-1",
                "--state-dir",
                str(state_dir(state, started)),
                "--aws-cli",
                str(aws),
                "--jupyter-url",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 0, result.stderr
    assert log.read_text().split() == [
        "sagemaker",
        "stop-notebook-instance",
        "--region",
        "us-east-1",
        "--notebook-instance-name",
        "nb",
    ]


def test_the_script_needs_nothing_beyond_the_standard_library():
    imports = [line for line in SCRIPT.read_text().splitlines() if line.startswith(("import ", "from "))]
    allowed = {
        "__future__",
        "argparse",
        "json",
        "os",
        "ssl",
        "subprocess",
        "sys",
        "urllib",
        "collections",
        "datetime",
        "pathlib",
        "typing",
    }
    for line in imports:
        module = line.split()[1].split(".")[0]
        assert module in allowed, f"{line}: the instance's system python3 has only the standard library"


def test_a_stop_that_fails_is_reported_and_fails_the_run(tmp_path, capsys):
    argv = ["--idle-minutes", "60", "--notebook-name", "nb", "--region", "eu-west-1"]
    argv += ["--state-dir", str(state_dir(tmp_path)), "--aws-cli", "/nowhere/aws"]

    def fetch(url):
        return {"kernels": [kernel(90)], "terminals": []}[url.rsplit("/", 1)[1]]

    # The real stop, with a CLI that is not there: what cron's minimal PATH used to cause.
    assert idle_check.main(argv, fetch=fetch, now=NOW) == 1
    assert "ERROR: could not stop nb with /nowhere/aws" in capsys.readouterr().out
