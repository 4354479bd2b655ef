"""The notebook's lifecycle scripts, rendered as the stack renders them and run in a temporary root.

AWS-only and system commands (aws, sudo, chown, nohup, crontab, systemctl, conda) are stubs that log their
arguments; every other command comes from a small allow-list of real tools, so an unexpected command fails.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from constructs.llmft_notebook import (
    EXAMPLES_PREFIX,
    LIFECYCLE_DIR,
    MAX_SCRIPT_CHARS,
    SIZE_CHECK_STAND_INS,
    check_script_sizes,
    encoded_size,
    lifecycle_scripts,
    render,
)
from project_config.notebook import NotebookConfig

BUCKET = "llmft-data-bucket"
STATE_MACHINE_ARN = "arn:aws:states:eu-west-1:123456789012:stateMachine:Training"
NOTEBOOK_NAME = "llmft-test"
REAL_TOOLS = ["bash", "cat", "chmod", "cp", "cut", "date", "dirname", "env", "find", "grep", "mkdir", "rm"]

# Each stub appends its name and arguments as one JSON line to $STUB_LOG.
STUB = """#!{python}
import json, os, sys
name = os.path.basename(sys.argv[0])
with open(os.environ["STUB_LOG"], "a") as log:
    log.write(json.dumps([name, *sys.argv[1:]]) + "\\n")
{body}
"""
STUB_BODIES = {
    # sudo -u USER -H -- CMD...: runs CMD as the current user.
    "sudo": "os.execvp(sys.argv[sys.argv.index('--') + 1], sys.argv[sys.argv.index('--') + 1 :])",
    "chown": "",
    # nohup only records what would run in the background.
    "nohup": "",
    "systemctl": "",
    # aws s3 sync s3://BUCKET/PREFIX DEST copies from the fake S3 folder; the rest only logs.
    "aws": """import shutil
if os.environ.get("AWS_STUB_FAIL"):
    sys.exit(1)
if sys.argv[1:3] == ["s3", "sync"]:
    source, dest = [arg for arg in sys.argv[3:] if not arg.startswith("--") and "/" in arg][:2]
    shutil.copytree(os.path.join(os.environ["FAKE_S3"], source[len("s3://"):]), dest, dirs_exist_ok=True)
""",
    "crontab": """import shutil
table = os.environ["CRONTAB_FILE"]
if sys.argv[1:] == ["-l"]:
    if not os.path.exists(table):
        sys.exit(1)
    sys.stdout.write(open(table).read())
else:
    shutil.copyfile(sys.argv[1], table)
""",
    # conda create --prefix P: a fake environment whose python logs (pip, ipykernel) and succeeds.
    "conda": """if os.environ.get("CONDA_STUB_FAIL"):
    sys.exit(2)
prefix = sys.argv[sys.argv.index("--prefix") + 1]
os.makedirs(os.path.join(prefix, "bin"))
python = os.path.join(prefix, "bin", "python")
with open(python, "w") as out:
    out.write(open(os.environ["PYTHON_STUB"]).read())
os.chmod(python, 0o755)
""",
    "python": "",
}


@dataclass
class Sandbox:
    root: Path
    stubs: Path
    log: Path
    crontab: Path
    fake_s3: Path
    env: dict

    @property
    def state_dir(self) -> Path:
        return self.root / "home/ec2-user/SageMaker/.llmft"

    @property
    def examples_dir(self) -> Path:
        return self.root / "home/ec2-user/SageMaker/llmft-examples"

    def calls(self, name: str | None = None) -> list[list[str]]:
        if not self.log.exists():
            return []
        calls = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [call for call in calls if name is None or call[0] == name]

    def run(self, script: Path, **extra_env: str) -> subprocess.CompletedProcess:
        pid_file = self.state_dir / "install.pid"
        before = pid_file.read_text() if pid_file.exists() else None
        result = subprocess.run(
            ["bash", str(script)], env={**self.env, **extra_env}, capture_output=True, text=True, timeout=60
        )
        if pid_file.exists() and pid_file.read_text() != before:
            self._wait_for_exit(int(pid_file.read_text()))
        return result

    @staticmethod
    def _wait_for_exit(pid: int) -> None:
        """The script started a background job (the nohup stub); let it finish logging first."""
        for _ in range(600):
            try:
                # Gone, or a zombie nobody reaps in a container: either way it has finished.
                if Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z"):
                    return
            except (FileNotFoundError, ProcessLookupError):
                return
            time.sleep(0.05)
        raise RuntimeError(f"background process {pid} did not exit")

    def add_stub(self, name: str, directory: Path | None = None) -> Path:
        path = (directory or self.stubs) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(STUB.format(python=sys.executable, body=STUB_BODIES[name]))
        path.chmod(0o755)
        return path


def make_sandbox(tmp_path: Path, *, with_crontab: bool = True) -> Sandbox:
    root, stubs, tools = tmp_path / "root", tmp_path / "stubs", tmp_path / "tools"
    tools.mkdir(parents=True)
    for tool in REAL_TOOLS:
        (tools / tool).symlink_to(shutil.which(tool))
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/python3").symlink_to(sys.executable)
    metadata = root / "opt/ml/metadata/resource-metadata.json"
    metadata.parent.mkdir(parents=True)
    metadata.write_text(
        json.dumps(
            {
                "ResourceArn": f"arn:aws:sagemaker:eu-west-1:123456789012:notebook-instance/{NOTEBOOK_NAME}",
                "ResourceName": NOTEBOOK_NAME,
            }
        )
    )
    fake_s3 = tmp_path / "s3"
    examples = fake_s3 / BUCKET / EXAMPLES_PREFIX
    (examples / "data").mkdir(parents=True)
    (examples / "01_example.ipynb").write_text("{}")
    (examples / "data/sample.jsonl").write_text("{}\n")
    sandbox = Sandbox(
        root=root,
        stubs=stubs,
        log=tmp_path / "calls.jsonl",
        crontab=tmp_path / "crontab.txt",
        fake_s3=fake_s3,
        env={
            "PATH": f"{stubs}:{tools}",
            "LLMFT_ROOT": str(root),
            "HOME": str(root / "home/ec2-user"),
            "STUB_LOG": str(tmp_path / "calls.jsonl"),
            "CRONTAB_FILE": str(tmp_path / "crontab.txt"),
            "FAKE_S3": str(fake_s3),
        },
    )
    for name in ["aws", "sudo", "chown", "nohup", "systemctl"] + (["crontab"] if with_crontab else []):
        sandbox.add_stub(name)
    sandbox.add_stub("conda", root / "home/ec2-user/anaconda3/bin")
    sandbox.env["PYTHON_STUB"] = str(sandbox.add_stub("python", tmp_path / "python-stub"))
    return sandbox


def write_scripts(tmp_path: Path, config: NotebookConfig) -> dict[str, Path]:
    scripts = lifecycle_scripts(config=config, data_bucket=BUCKET, state_machine_arn=STATE_MACHINE_ARN)
    paths = {}
    for name, text in scripts.items():
        paths[name] = tmp_path / f"{name}.sh"
        paths[name].write_text(text)
    return paths


@pytest.fixture
def sandbox(tmp_path) -> Sandbox:
    return make_sandbox(tmp_path)


@pytest.fixture
def scripts(tmp_path) -> dict[str, Path]:
    return write_scripts(tmp_path, NotebookConfig(idle_timeout_minutes=45, llamafactory_version="0.9.5"))


@contextlib.contextmanager
def install_stand_in():
    """A live process whose command line names install-env.sh, like the background install."""
    process = subprocess.Popen(["bash", "-c", "sleep 60; exit 0", "install-env.sh"])
    cmdline = Path(f"/proc/{process.pid}/cmdline")
    # Until bash has started, the child's command line is still pytest's.
    for _ in range(200):
        if b"install-env.sh" in cmdline.read_bytes():
            break
        time.sleep(0.01)
    try:
        yield process.pid
    finally:
        process.kill()
        process.wait()


def mark_env_ready(sandbox: Sandbox) -> None:
    """As a finished install leaves it: the environment's python and the ready marker."""
    sandbox.add_stub("python", sandbox.state_dir / "conda-env/bin")
    (sandbox.state_dir / "env-ready").write_text("0.9.5\n")


# --- on-create -------------------------------------------------------------------------------------------


def test_on_create_writes_the_install_script_and_starts_it_in_the_background(sandbox, scripts):
    result = sandbox.run(scripts["on-create"])
    assert result.returncode == 0, result.stderr
    install = sandbox.state_dir / "install-env.sh"
    expected = render(
        (LIFECYCLE_DIR / "install-env.sh").read_text(), {"LLAMAFACTORY_VERSION": "0.9.5"}
    ).rstrip("\n")
    assert install.read_text().rstrip("\n") == expected, "on-create must write the rendered install script"
    assert os.access(install, os.X_OK), "the install script must be executable"
    assert sandbox.calls("nohup") == [
        [
            "nohup",
            "sudo",
            "-u",
            "ec2-user",
            "-H",
            "--",
            "env",
            f"LLMFT_ROOT={sandbox.root}",
            "bash",
            str(install),
        ]
    ], "the install must run in the background (nohup) as ec2-user"
    assert (sandbox.state_dir / "install.pid").read_text().strip().isdigit(), "the background pid is recorded"
    assert ["chown", "-R", "ec2-user:ec2-user", str(sandbox.state_dir)] in sandbox.calls("chown")
    assert not sandbox.calls("conda"), "on-create must not install in the foreground (5-minute limit)"


# --- install-env.sh (the background job) -----------------------------------------------------------------


def test_install_builds_the_pinned_environment_on_the_volume_and_registers_the_kernel(sandbox, scripts):
    assert sandbox.run(scripts["on-create"]).returncode == 0
    result = sandbox.run(sandbox.state_dir / "install-env.sh")
    assert result.returncode == 0, result.stderr
    env_dir = sandbox.state_dir / "conda-env"
    conda = sandbox.calls("conda")
    assert conda == [
        [
            "conda",
            "create",
            "--yes",
            "--quiet",
            "--prefix",
            str(env_dir),
            "--override-channels",
            "--channel",
            "conda-forge",
            "python=3.11",
        ]
    ], "the environment lives on the persistent volume, from conda-forge only"
    requirements = (sandbox.state_dir / "requirements-notebook.txt").read_text().splitlines()
    for pin in ["llamafactory==0.9.5", "bitsandbytes==0.48.2", "peft==0.18.1", "ipykernel==7.4.0"]:
        assert pin in requirements, f"{pin} missing from the notebook environment"
    python_calls = sandbox.calls("python")
    assert python_calls[0][:4] == ["python", "-m", "pip", "install"], python_calls
    assert str(sandbox.state_dir / "requirements-notebook.txt") in python_calls[0]
    assert python_calls[1][:6] == ["python", "-m", "ipykernel", "install", "--user", "--name"], python_calls
    assert python_calls[1][6] == "llamafactory"
    assert (sandbox.state_dir / "env-ready").read_text().strip() == "0.9.5", "ready marker names the version"


def test_a_failed_install_leaves_no_ready_marker(sandbox, scripts):
    assert sandbox.run(scripts["on-create"]).returncode == 0
    result = sandbox.run(sandbox.state_dir / "install-env.sh", CONDA_STUB_FAIL="1")
    assert result.returncode != 0, "a failing conda must fail the install"
    assert not (sandbox.state_dir / "env-ready").exists(), "no kernel for a broken environment"


def test_the_configured_llamafactory_version_is_installed(tmp_path, sandbox):
    paths = write_scripts(tmp_path, NotebookConfig(llamafactory_version="0.9.4"))
    assert sandbox.run(paths["on-create"]).returncode == 0
    assert sandbox.run(sandbox.state_dir / "install-env.sh").returncode == 0
    assert "llamafactory==0.9.4" in (sandbox.state_dir / "requirements-notebook.txt").read_text()


# --- on-start --------------------------------------------------------------------------------------------


def test_on_start_writes_the_settings_the_examples_read(sandbox, scripts):
    result = sandbox.run(scripts["on-start"])
    assert result.returncode == 0, result.stderr
    settings = json.loads((sandbox.state_dir / "settings.json").read_text())
    assert settings == {
        "region": "eu-west-1",
        "data_bucket": BUCKET,
        "training_state_machine_arn": STATE_MACHINE_ARN,
        "examples_dir": str(sandbox.examples_dir),
    }


def test_on_start_copies_the_examples_from_s3_without_overwriting_edits(sandbox, scripts):
    sandbox.examples_dir.mkdir(parents=True)
    (sandbox.examples_dir / "01_example.ipynb").write_text("my edits")
    result = sandbox.run(scripts["on-start"])
    assert result.returncode == 0, result.stderr
    sync = [call for call in sandbox.calls("aws") if call[1:3] == ["s3", "sync"]]
    assert sync and f"s3://{BUCKET}/{EXAMPLES_PREFIX}" in sync[0], sync
    assert (sandbox.examples_dir / "data/sample.jsonl").exists(), "new example files are copied"
    assert (sandbox.examples_dir / "01_example.ipynb").read_text() == "my edits", "user edits must survive"
    assert ["chown", "-R", "ec2-user:ec2-user", str(sandbox.examples_dir)] in sandbox.calls("chown")


def test_on_start_survives_an_s3_failure(sandbox, scripts):
    mark_env_ready(sandbox)
    result = sandbox.run(scripts["on-start"], AWS_STUB_FAIL="1")
    assert result.returncode == 0, "a failed copy of the examples must not fail the instance start"
    assert "WARNING: could not copy the example notebooks" in result.stderr
    assert sandbox.calls("python"), "the kernel is still registered"


def test_on_start_registers_the_kernel_when_the_environment_is_ready(sandbox, scripts):
    mark_env_ready(sandbox)
    result = sandbox.run(scripts["on-start"])
    assert result.returncode == 0, result.stderr
    sudo = [call for call in sandbox.calls("sudo") if "ipykernel" in call]
    assert sudo and sudo[0][:5] == ["sudo", "-u", "ec2-user", "-H", "--"], "kernel registered as ec2-user"
    assert sandbox.calls("python") == [
        [
            "python",
            "-m",
            "ipykernel",
            "install",
            "--user",
            "--name",
            "llamafactory",
            "--display-name",
            "LLaMA-Factory 0.9.5",
        ]
    ]
    assert not sandbox.calls("nohup"), "a ready environment is not installed again"


def test_on_start_restarts_an_install_that_did_not_finish(sandbox, scripts):
    assert sandbox.run(scripts["on-create"]).returncode == 0
    # After a stop and start the recorded pid belongs to some other process (here: pytest).
    (sandbox.state_dir / "install.pid").write_text(f"{os.getpid()}\n")
    sandbox.log.unlink()
    result = sandbox.run(scripts["on-start"])
    assert result.returncode == 0, result.stderr
    nohup = sandbox.calls("nohup")
    assert len(nohup) == 1 and nohup[0][-1] == str(sandbox.state_dir / "install-env.sh"), nohup
    assert "installing again" in result.stdout


def test_on_start_leaves_a_running_install_alone(sandbox, scripts):
    assert sandbox.run(scripts["on-create"]).returncode == 0
    sandbox.log.unlink()
    with install_stand_in() as pid:
        (sandbox.state_dir / "install.pid").write_text(f"{pid}\n")
        result = sandbox.run(scripts["on-start"])
    assert result.returncode == 0, result.stderr
    assert not sandbox.calls("nohup") and not sandbox.calls("python"), sandbox.calls()
    assert "still installing" in result.stdout


def test_on_start_installs_the_idle_check_and_a_cron_entry(sandbox, scripts):
    sandbox.crontab.write_text("0 3 * * * /usr/local/bin/backup\n")
    for _ in range(2):
        result = sandbox.run(scripts["on-start"])
        assert result.returncode == 0, result.stderr
    check = sandbox.root / "usr/local/bin/llmft-idle-check"
    assert check.read_text().rstrip("\n") == (LIFECYCLE_DIR / "idle_check.py").read_text().rstrip("\n")
    assert os.access(check, os.X_OK)
    entries = sandbox.crontab.read_text().splitlines()
    assert entries[0] == "0 3 * * * /usr/local/bin/backup", "other cron entries are kept"
    idle = [entry for entry in entries if "llmft-idle-check" in entry]
    assert idle == [
        f"*/5 * * * * {sandbox.root}/usr/bin/python3 {check} --idle-minutes 45"
        f" --notebook-name {NOTEBOOK_NAME} --region eu-west-1 --state-dir {sandbox.state_dir}"
        f" --aws-cli {sandbox.stubs}/aws"
        f" >>{sandbox.root}/var/log/llmft-idle-check.log 2>&1"
    ], "exactly one idle-check entry, every 5 minutes, even after two starts"
    assert not sandbox.calls("systemctl")


def test_without_cron_the_idle_check_runs_from_a_systemd_timer(tmp_path, scripts):
    sandbox = make_sandbox(tmp_path / "no-cron", with_crontab=False)
    result = sandbox.run(scripts["on-start"])
    assert result.returncode == 0, result.stderr
    units = sandbox.root / "etc/systemd/system"
    service = (units / "llmft-idle-check.service").read_text()
    assert f"--idle-minutes 45 --notebook-name {NOTEBOOK_NAME}" in service
    assert "OnUnitActiveSec=5min" in (units / "llmft-idle-check.timer").read_text()
    assert sandbox.calls("systemctl") == [
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", "llmft-idle-check.timer"],
    ]


def test_idle_timeout_zero_schedules_no_stop(tmp_path, sandbox):
    paths = write_scripts(tmp_path, NotebookConfig(idle_timeout_minutes=0))
    result = sandbox.run(paths["on-start"])
    assert result.returncode == 0, result.stderr
    assert not sandbox.crontab.exists() and not sandbox.calls("systemctl"), "auto-stop off: nothing scheduled"
    assert "idle auto-stop is off" in result.stdout


def test_the_installed_idle_check_stops_the_instance_with_the_scheduled_command(sandbox, scripts):
    """Runs the cron entry's command itself against a Jupyter stand-in that reports an old kernel."""
    from tests.test_notebook_idle_check import jupyter_stand_in

    assert sandbox.run(scripts["on-start"]).returncode == 0
    entry = next(line for line in sandbox.crontab.read_text().splitlines() if "llmft-idle-check" in line)
    command = entry.split(" ", 5)[5].split(" >>")[0].split()
    (sandbox.state_dir / "started-at").write_text("0\n")
    kernels = [{"name": "python3", "execution_state": "idle", "last_activity": "2020-01-01T00:00:00.000000Z"}]
    with jupyter_stand_in(kernels, []) as url:
        result = subprocess.run(
            command, env={**sandbox.env, "LLMFT_JUPYTER_URL": url}, capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 0, result.stderr
    assert [
        "aws",
        "sagemaker",
        "stop-notebook-instance",
        "--region",
        "eu-west-1",
        "--notebook-instance-name",
        NOTEBOOK_NAME,
    ] in sandbox.calls("aws"), result.stdout


# --- rendering, size and shellcheck ------------------------------------------------------------------------


def test_every_placeholder_is_filled_and_no_template_marker_is_left(scripts):
    for name, path in scripts.items():
        assert "@@" not in path.read_text(), f"{name} still holds a placeholder"


def test_render_rejects_missing_and_unused_values():
    with pytest.raises(ValueError, match="do not match"):
        render("echo @@A@@", {})
    with pytest.raises(ValueError, match="do not match"):
        render("echo @@A@@", {"A": "1", "B": "2"})


def test_scripts_fit_sagemakers_limit_with_the_longest_deploy_time_values():
    scripts = lifecycle_scripts(
        config=NotebookConfig(),
        data_bucket=SIZE_CHECK_STAND_INS["data_bucket"],
        state_machine_arn=SIZE_CHECK_STAND_INS["state_machine_arn"],
    )
    for name, script in scripts.items():
        assert encoded_size(script) <= MAX_SCRIPT_CHARS, f"{name}: {encoded_size(script)} base64 characters"


def test_an_oversized_script_is_refused():
    with pytest.raises(ValueError, match="on-start is .* characters in base64; SageMaker allows 16384"):
        check_script_sizes({"on-start": "x" * 12289})


def test_scripts_are_shellcheck_clean(tmp_path, scripts):
    shellcheck = str(Path(sys.executable).parent / "shellcheck")
    rendered = [*scripts.values(), tmp_path / "install-env.sh"]
    rendered[-1].write_text(
        render((LIFECYCLE_DIR / "install-env.sh").read_text(), {"LLAMAFACTORY_VERSION": "0.9.5"})
    )
    templates = sorted(LIFECYCLE_DIR.glob("*.sh"))
    result = subprocess.run([shellcheck, *map(str, templates + rendered)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_install_finds_conda_where_the_platform_keeps_it(tmp_path, scripts):
    sandbox = make_sandbox(tmp_path / "opt-conda")
    shutil.rmtree(sandbox.root / "home/ec2-user/anaconda3")
    sandbox.add_stub("conda", sandbox.root / "opt/conda/bin")
    assert sandbox.run(scripts["on-create"]).returncode == 0
    result = sandbox.run(sandbox.state_dir / "install-env.sh")
    assert result.returncode == 0, result.stderr
    assert sandbox.calls("conda"), "the conda of /opt/conda built the environment"


def test_without_conda_the_install_fails_saying_where_it_looked(tmp_path, scripts):
    sandbox = make_sandbox(tmp_path / "no-conda")
    shutil.rmtree(sandbox.root / "home/ec2-user/anaconda3")
    assert sandbox.run(scripts["on-create"]).returncode == 0
    result = sandbox.run(sandbox.state_dir / "install-env.sh")
    assert result.returncode != 0
    assert (
        "ERROR: no conda found (looked in /home/ec2-user/anaconda3/bin, /opt/conda/bin and PATH)"
        in result.stderr
    )
    assert not (sandbox.state_dir / "env-ready").exists()


def test_an_instance_whose_idle_check_could_not_stop_it_does_not_start(tmp_path, scripts):
    sandbox = make_sandbox(tmp_path / "no-aws")
    (sandbox.stubs / "aws").unlink()
    result = sandbox.run(scripts["on-start"])
    assert result.returncode != 0, "no aws CLI anywhere: the start fails rather than run unwatched"
    assert "ERROR: no aws CLI found" in result.stderr
    assert not sandbox.crontab.exists(), "no idle check that could never stop the instance"


def test_the_idle_check_gets_the_aws_cli_by_its_full_path_from_the_conda_install(tmp_path, scripts):
    sandbox = make_sandbox(tmp_path / "conda-aws")
    (sandbox.stubs / "aws").unlink()
    cli = sandbox.add_stub("aws", sandbox.root / "home/ec2-user/anaconda3/bin")
    result = sandbox.run(scripts["on-start"])
    assert result.returncode == 0, result.stderr
    assert f"--aws-cli {cli} " in sandbox.crontab.read_text()
