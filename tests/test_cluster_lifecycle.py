"""HyperPod lifecycle scripts: the node planner, the entry script on a controller and a worker (system
commands stubbed, paths under a temporary root), the sbatch job, shellcheck."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import ROOT

LIFECYCLE = ROOT / "cluster_lifecycle"
sys.path.insert(0, str(LIFECYCLE))

import llmft_lifecycle as lc  # noqa: E402

IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/llmft-train:abc123"
PARAMS = {
    "controller_group": "controller",
    "login_group": "login",
    "worker_groups": [{"instance_group_name": "workers", "partition_name": "gpu"}],
    "fsx_dns_name": "fs-0123456789abcdef0.fsx.eu-west-1.amazonaws.com",
    "fsx_mountname": "abcdefgh",
    "llmft_mount_point": "/fsx",
    "llmft_image_uri": IMAGE,
}
RESOURCE_CONFIG = {
    "ClusterConfig": {
        "ClusterArn": "arn:aws:sagemaker:eu-west-1:123456789012:cluster/abc",
        "ClusterName": "c",
    },
    "InstanceGroups": [
        {"Name": "controller", "Instances": [{"InstanceName": "ip-1", "CustomerIpAddress": "10.0.0.10"}]},
        {"Name": "login", "Instances": [{"InstanceName": "ip-2", "CustomerIpAddress": "10.0.0.11"}]},
        {
            "Name": "workers",
            "Instances": [
                {"InstanceName": "ip-3", "CustomerIpAddress": "10.0.0.20"},
                {"InstanceName": "ip-4", "CustomerIpAddress": "10.0.0.21"},
            ],
        },
    ],
}


# --- planning (pure) ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "role", "group"),
    [
        ("10.0.0.10", "controller", "controller"),
        ("10.0.0.11", "login", "login"),
        ("10.0.0.21", "worker", "workers"),
    ],
)
def test_node_role_comes_from_the_group_holding_its_address(address, role, group):
    plan = lc.plan_node(PARAMS, RESOURCE_CONFIG, address)
    assert (plan.role, plan.group) == (role, group)
    assert plan.controller_addresses == ("10.0.0.10",)


def test_plan_names_file_system_and_image_for_enroot():
    plan = lc.plan_node(PARAMS, RESOURCE_CONFIG, "10.0.0.20")
    assert plan.image_ref == "123456789012.dkr.ecr.eu-west-1.amazonaws.com#llmft-train:abc123"
    assert (plan.registry, plan.region) == ("123456789012.dkr.ecr.eu-west-1.amazonaws.com", "eu-west-1")
    shell = plan.shell()
    assert "FSX_DNS_NAME=fs-0123456789abcdef0.fsx.eu-west-1.amazonaws.com\n" in shell
    assert "NODE_ROLE=worker\n" in shell and "CONTROLLER_ADDRESSES=10.0.0.10\n" in shell


@pytest.mark.parametrize(
    ("params", "resource_config", "address", "message"),
    [
        (PARAMS, RESOURCE_CONFIG, "10.9.9.9", "no instance has address 10.9.9.9"),
        ({**PARAMS, "fsx_dns_name": ""}, RESOURCE_CONFIG, "10.0.0.20", "'fsx_dns_name' is missing"),
        ({**PARAMS, "worker_groups": []}, RESOURCE_CONFIG, "10.0.0.20", "group 'workers' is none of"),
        (
            {**PARAMS, "llmft_image_uri": "docker.io/library/x:1"},
            RESOURCE_CONFIG,
            "10.0.0.20",
            "not an ECR image",
        ),
        (
            PARAMS,
            {"InstanceGroups": RESOURCE_CONFIG["InstanceGroups"][2:]},
            "10.0.0.20",
            "controller group 'controller' has no instance",
        ),
    ],
)
def test_bad_inputs_name_the_file_and_the_problem(params, resource_config, address, message):
    with pytest.raises(lc.PlanError, match=message):
        lc.plan_node(params, resource_config, address)


def test_rendered_files():
    plan = lc.plan_node(PARAMS, RESOURCE_CONFIG, "10.0.0.20")
    assert lc.fstab_line(plan) == (
        "fs-0123456789abcdef0.fsx.eu-west-1.amazonaws.com@tcp:/abcdefgh /fsx lustre "
        "defaults,noatime,flock,_netdev 0 0\n"
    )
    assert lc.enroot_credentials(plan) == (
        "machine 123456789012.dkr.ecr.eu-west-1.amazonaws.com login AWS "
        "password $(aws ecr get-login-password --region eu-west-1)\n"
    )
    assert lc.pyxis_conf("/usr/local/lib/slurm/spank_pyxis.so").startswith(
        "required /usr/local/lib/slurm/spank_pyxis.so "
    )
    conf = lc.enroot_conf("/opt/sagemaker", "/fsx")
    assert "ENROOT_CACHE_PATH /fsx/llmft/enroot-cache\n" in conf, "the image cache is shared on FSx"
    assert "ENROOT_DATA_PATH /opt/sagemaker/enroot/data/user-$(id -u)\n" in conf, "containers stay local"
    assert "ENROOT_CONFIG_PATH /etc/enroot/llmft\n" in conf, "every user gets the ECR credentials"
    assert "LLMFT_IMAGE='123456789012.dkr.ecr.eu-west-1.amazonaws.com#llmft-train:abc123'" in lc.cluster_env(
        plan
    )


def test_command_line_reports_a_bad_file_without_a_traceback(tmp_path, capsys):
    (tmp_path / "params.json").write_text("{not json")
    (tmp_path / "rc.json").write_text(json.dumps(RESOURCE_CONFIG))
    code = lc.main(
        [
            "plan",
            "--params",
            str(tmp_path / "params.json"),
            "--resource-config",
            str(tmp_path / "rc.json"),
            "--address",
            "10.0.0.10",
        ]
    )
    assert code == 2
    assert "params.json is not valid JSON" in capsys.readouterr().err


# --- the entry script on a node, commands stubbed ---------------------------------------------------

STUB = """#!/bin/bash
echo "$(basename "$0") $*" >>"${STUB_LOG}"
case "$(basename "$0")" in
  mountpoint) [[ -f "${STUB_STATE}/mounted" ]]; exit $? ;;
  scontrol)
    # Answers only after STUB_PING_FAILS failed pings (slurmctld still starting).
    echo x >>"${STUB_STATE}/pings"
    [[ $(wc -l <"${STUB_STATE}/pings") -gt ${STUB_PING_FAILS:-0} ]]; exit $? ;;
  mount) [[ -n "${STUB_MOUNT_FAILS:-}" ]] && exit 32; touch "${STUB_STATE}/mounted" ;;
  getent) echo "ubuntu:x:1000:1000::/home/ubuntu:/bin/bash" ;;
  srun) [[ "$1" == "--help" ]] && echo "  --auto-resume=<0|1>  HyperPod auto-resume" ;;
esac
exit 0
"""
STUBBED = (
    "mount",
    "mountpoint",
    "modprobe",
    "systemctl",
    "usermod",
    "chown",
    "id",
    "getent",
    "apt-get",
    "docker",
    "enroot",
    "scontrol",
    "aws",
    "srun",
    "sleep",
)


def make_node(tmp_path: Path) -> dict:
    """A copy of the scripts, a root with what HyperPod's AMI provides, and stubs on PATH."""
    scripts = tmp_path / "lifecycle"
    shutil.copytree(LIFECYCLE, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    (scripts / "llmft_parameters.json").write_text(json.dumps(PARAMS))
    root = tmp_path / "root"
    (root / "opt/ml/config").mkdir(parents=True)
    (root / "opt/ml/config/resource_config.json").write_text(json.dumps(RESOURCE_CONFIG))
    (root / "opt/slurm/etc").mkdir(parents=True)
    # HyperPod's agent writes slurm.conf naming the controller before the controller starts Slurm.
    (root / "opt/slurm/etc/slurm.conf").write_text("SlurmctldHost=ip-1(10.0.0.10)\n")
    (root / "usr/local/lib/slurm").mkdir(parents=True)
    (root / "usr/local/lib/slurm/spank_pyxis.so").write_text("")
    (root / "etc/skel").mkdir(parents=True)
    (root / "etc/skel/.bashrc").write_text("# skeleton\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in STUBBED:
        (bin_dir / name).write_text(STUB)
        (bin_dir / name).chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    return {"scripts": scripts, "root": root, "bin": bin_dir, "state": state, "log": tmp_path / "calls.log"}


def run_on_create(node: dict, address: str, **extra: str) -> subprocess.CompletedProcess:
    env = {
        "PATH": f"{node['bin']}:{os.environ['PATH']}",
        "LLMFT_ROOT": str(node["root"]),
        "LLMFT_PYTHON": sys.executable,
        "LLMFT_NODE_ADDRESS": address,
        "LLMFT_RETRY_SECONDS": "0",
        "LLMFT_MOUNT_ATTEMPTS": "3",
        "STUB_LOG": str(node["log"]),
        "STUB_STATE": str(node["state"]),
        **extra,
    }
    return subprocess.run(
        ["bash", str(node["scripts"] / "on_create.sh")], env=env, capture_output=True, text=True, timeout=60
    )


def calls(node: dict) -> list[str]:
    return node["log"].read_text().splitlines() if node["log"].exists() else []


@pytest.fixture
def controller(tmp_path):
    node = make_node(tmp_path)
    result = run_on_create(node, "10.0.0.10")
    assert result.returncode == 0, result.stderr
    return node


@pytest.fixture
def worker(tmp_path):
    node = make_node(tmp_path)
    result = run_on_create(node, "10.0.0.20")
    assert result.returncode == 0, result.stderr
    return node


def test_controller_mounts_fsx_first_then_starts_slurmctld(controller):
    log = calls(controller)
    mount = next(i for i, c in enumerate(log) if c.startswith("mount -t lustre"))
    assert log[mount] == (
        f"mount -t lustre -o noatime,flock fs-0123456789abcdef0.fsx.eu-west-1.amazonaws.com@tcp:/abcdefgh "
        f"{controller['root']}/fsx"
    )
    fsx_users = [i for i, c in enumerate(log) if c.startswith(("usermod", "systemctl", "chown"))]
    assert min(fsx_users) > mount, "nothing that needs FSx may run before the mount is up"
    assert "systemctl restart slurmctld" in log and "scontrol ping" in log
    assert not any("slurmd" in c and "slurmctld" not in c for c in log), "the controller runs no slurmd"
    fstab = (controller["root"] / "etc/fstab").read_text()
    assert "fs-0123456789abcdef0.fsx.eu-west-1.amazonaws.com@tcp:/abcdefgh /fsx lustre" in fstab


def test_controller_moves_homes_to_fsx_and_publishes_the_job_scripts(controller):
    root = controller["root"]
    assert "usermod --home /fsx/home/ubuntu ubuntu" in calls(controller)
    assert (root / "fsx/home/ubuntu/.bashrc").read_text() == "# skeleton\n", "a new home gets the skeleton"
    assert f"chown -R ubuntu: {root}/fsx/home/ubuntu" in calls(controller)
    assert (root / "fsx/llmft/sbatch/llamafactory-multinode.sbatch").is_file()
    env = (root / "fsx/llmft/cluster.env").read_text()
    assert "LLMFT_IMAGE='123456789012.dkr.ecr.eu-west-1.amazonaws.com#llmft-train:abc123'" in env


def test_enroot_and_pyxis_are_configured_for_our_ecr_image(controller):
    root = controller["root"]
    credentials = (root / "etc/enroot/llmft/.credentials").read_text()
    assert credentials.startswith(
        "machine 123456789012.dkr.ecr.eu-west-1.amazonaws.com login AWS password $(aws ecr"
    )
    assert "ENROOT_CACHE_PATH /fsx/llmft/enroot-cache" in (root / "etc/enroot/enroot.conf").read_text()
    pyxis = (root / "opt/slurm/etc/plugstack.conf.d/pyxis.conf").read_text()
    assert pyxis.startswith("required /usr/local/lib/slurm/spank_pyxis.so")
    assert (
        "include /opt/slurm/etc/plugstack.conf.d/*.conf"
        in (root / "opt/slurm/etc/plugstack.conf").read_text()
    )


def test_docker_keeps_its_data_on_the_local_volume_and_logs_rotate(controller):
    root = controller["root"]
    assert json.loads((root / "etc/docker/daemon.json").read_text()) == {"data-root": "/opt/sagemaker/docker"}
    assert "systemctl enable --now docker" in calls(controller)
    assert not any(c.startswith("apt-get") for c in calls(controller)), (
        "docker is on the AMI: nothing installed"
    )
    assert "/var/log/llmft/*.log" in (root / "etc/logrotate.d/llmft").read_text()


def test_every_step_logs_to_its_own_file(controller):
    logs = {p.name for p in (controller["root"] / "var/log/llmft").iterdir()}
    for step in (
        "plan",
        "mount_fsx",
        "home_folders",
        "docker",
        "enroot_pyxis",
        "shared_files",
        "slurm",
        "log_rotation",
    ):
        assert f"{step}.log" in logs, f"no log for step {step}: {sorted(logs)}"


def test_worker_restarts_its_slurmd_on_its_own_configuration_and_publishes_nothing(worker):
    log = calls(worker)
    assert "systemctl restart slurmd" in log
    assert not (worker["root"] / "etc/systemd/system/slurmd.service.d").exists(), (
        "no configless drop-in: HyperPod configures Slurm on every node"
    )
    assert not any("slurmctld" in c for c in log), "a worker never starts the controller daemon"
    assert not (worker["root"] / "fsx/llmft/sbatch").exists(), "only the controller publishes the job scripts"


def _pyxis_lines(root: Path) -> list[str]:
    """Every active line that loads pyxis in the node's plugin stack (plugstack.conf and its includes)."""
    etc = root / "opt/slurm/etc"
    files = [etc / "plugstack.conf", *sorted((etc / "plugstack.conf.d").glob("*.conf"))]
    return [
        line
        for path in files
        if path.is_file()
        for line in path.read_text().splitlines()
        if "spank_pyxis.so" in line.split("#")[0]
    ]


@pytest.mark.parametrize(
    "address", ["10.0.0.10", "10.0.0.11", "10.0.0.20"], ids=["controller", "login", "worker"]
)
def test_every_node_type_loads_pyxis_once_from_its_own_plugin_stack(tmp_path, address):
    node = make_node(tmp_path)
    result = run_on_create(node, address)
    assert result.returncode == 0, result.stderr
    assert _pyxis_lines(node["root"]) == [lc.pyxis_conf("/usr/local/lib/slurm/spank_pyxis.so").strip()]


@pytest.mark.parametrize(
    "address", ["10.0.0.10", "10.0.0.11", "10.0.0.20"], ids=["controller", "login", "worker"]
)
@pytest.mark.parametrize("where", ["included file", "plugstack.conf"])
def test_an_image_that_already_loads_pyxis_gets_no_second_copy(tmp_path, address, where):
    node = make_node(tmp_path)
    etc = node["root"] / "opt/slurm/etc"
    line = "required /usr/lib/x86_64-linux-gnu/slurm/spank_pyxis.so runtime_path=/run/pyxis\n"
    if where == "included file":
        (etc / "plugstack.conf.d").mkdir()
        (etc / "plugstack.conf.d/nvidia-pyxis.conf").write_text(line)
        (etc / "plugstack.conf").write_text("include /opt/slurm/etc/plugstack.conf.d/*.conf\n")
    else:
        (etc / "plugstack.conf").write_text(line)
    # Runs twice: a second run must not add it either.
    for _ in range(2):
        result = run_on_create(node, address)
        assert result.returncode == 0, result.stderr
    assert _pyxis_lines(node["root"]) == [line.strip()]
    assert (
        "pyxis is already loaded by /opt/slurm/etc/"
        in (node["root"] / "var/log/llmft/enroot_pyxis.log").read_text()
    )


def test_a_file_system_hyperpod_mounted_is_used_as_it_is(tmp_path):
    node = make_node(tmp_path)
    (node["state"] / "mounted").touch()  # HyperPod's FsxLustreConfig mounted /fsx before the scripts ran
    result = run_on_create(node, "10.0.0.20")
    assert result.returncode == 0, result.stderr
    assert not any(c.startswith(("mount ", "modprobe")) for c in calls(node))
    assert not (node["root"] / "etc/fstab").exists(), "HyperPod's mount is not written again"


def test_slurmctld_is_waited_for_with_retries(tmp_path):
    node = make_node(tmp_path)
    result = run_on_create(node, "10.0.0.10", STUB_PING_FAILS="3")
    assert result.returncode == 0, result.stderr
    assert calls(node).count("scontrol ping") == 4, "three failed pings, then the one that answers"


def test_a_slurmctld_that_never_answers_fails_the_node_after_a_bounded_wait(tmp_path):
    node = make_node(tmp_path)
    result = run_on_create(node, "10.0.0.10", STUB_PING_FAILS="99", LLMFT_SLURMCTLD_ATTEMPTS="5")
    assert result.returncode != 0 and "step slurm: FAILED" in result.stderr
    assert "slurmctld did not answer scontrol ping after 5 attempts" in result.stderr
    assert calls(node).count("scontrol ping") == 5


def test_dockers_own_settings_are_kept_when_the_data_root_moves(tmp_path):
    node = make_node(tmp_path)
    daemon = node["root"] / "etc/docker/daemon.json"
    daemon.parent.mkdir(parents=True)
    image_settings = {
        "default-runtime": "nvidia",
        "runtimes": {"nvidia": {"path": "nvidia-container-runtime"}},
    }
    daemon.write_text(json.dumps(image_settings))
    result = run_on_create(node, "10.0.0.20")
    assert result.returncode == 0, result.stderr
    assert json.loads(daemon.read_text()) == {**image_settings, "data-root": "/opt/sagemaker/docker"}


def test_a_daemon_json_that_is_not_json_stops_the_docker_step_clearly(tmp_path):
    node = make_node(tmp_path)
    daemon = node["root"] / "etc/docker/daemon.json"
    daemon.parent.mkdir(parents=True)
    daemon.write_text("{not json")
    result = run_on_create(node, "10.0.0.20")
    assert result.returncode != 0 and "step docker: FAILED" in result.stderr
    assert "/etc/docker/daemon.json is not valid JSON" in result.stderr
    assert daemon.read_text() == "{not json", "the image's file is left as it was"


def test_running_twice_changes_nothing_twice(tmp_path):
    node = make_node(tmp_path)
    for _ in range(2):
        result = run_on_create(node, "10.0.0.20")
        assert result.returncode == 0, result.stderr
    root = node["root"]
    assert (root / "etc/fstab").read_text().count("@tcp:/abcdefgh") == 1
    assert (root / "opt/slurm/etc/plugstack.conf").read_text().count("include") == 1
    assert calls(node).count("systemctl restart docker") == 1, "docker restarts only when its config changes"
    assert sum(c.startswith("chown -R ubuntu:") for c in calls(node)) == 1, "an existing home is left alone"


def test_a_mount_that_never_comes_up_stops_everything_with_the_steps_name(tmp_path):
    node = make_node(tmp_path)
    result = run_on_create(node, "10.0.0.20", STUB_MOUNT_FAILS="1")
    assert result.returncode != 0
    assert "step mount_fsx: FAILED" in result.stderr
    assert "did not mount after 3 attempts" in result.stderr
    log = calls(node)
    assert sum(c.startswith("mount -t lustre") for c in log) == 3, "the mount is retried"
    assert not any(c.startswith(("usermod", "systemctl")) for c in log), "nothing runs without FSx"


def test_a_missing_pyxis_fails_the_enroot_pyxis_step(tmp_path):  # and the image loads none
    node = make_node(tmp_path)
    (node["root"] / "usr/local/lib/slurm/spank_pyxis.so").unlink()
    result = run_on_create(node, "10.0.0.20")
    assert result.returncode != 0 and "step enroot_pyxis: FAILED" in result.stderr
    assert "pyxis (spank_pyxis.so) is not on this AMI" in result.stderr
    assert not any("slurmd" in c for c in calls(node)), "slurmd must not start without pyxis"


# --- the multi-node job ------------------------------------------------------------------------------


def make_fsx(tmp_path: Path) -> Path:
    fsx = tmp_path / "fsx"
    (fsx / "llmft/sbatch").mkdir(parents=True)
    for name in ("llamafactory-multinode.sbatch", "llmft-node.sh"):
        shutil.copy(LIFECYCLE / "sbatch" / name, fsx / "llmft/sbatch" / name)
    (fsx / "llmft/cluster.env").write_text(
        f"LLMFT_IMAGE_URI={IMAGE}\nLLMFT_IMAGE='123456789012.dkr.ecr.eu-west-1.amazonaws.com#llmft-train:abc123'\n"
        f"LLMFT_FSX={fsx}\n"
    )
    (fsx / "datasets/alpaca").mkdir(parents=True)
    (fsx / "datasets/alpaca/train.json").write_text("[]")
    (fsx / "models/tiny").mkdir(parents=True)
    (fsx / "hyperpod/configs").mkdir(parents=True)
    (fsx / "hyperpod/configs/run.json").write_text('{"recipe": "lora"}')
    return fsx


def test_sbatch_runs_the_image_on_every_node_with_fsx_mounted_and_auto_resume(tmp_path):
    fsx = make_fsx(tmp_path)
    node = make_node(tmp_path)
    env = {
        "PATH": f"{node['bin']}:{os.environ['PATH']}",
        "STUB_LOG": str(node["log"]),
        "STUB_STATE": str(node["state"]),
        "LLMFT_FSX": str(fsx),
        "LLMFT_JOB": "run1",
        "LLMFT_HYPERPARAMETERS": str(fsx / "hyperpod/configs/run.json"),
        "LLMFT_TRAIN_DATA": str(fsx / "datasets/alpaca"),
        "LLMFT_MODEL_DIR": str(fsx / "models/tiny"),
    }
    result = subprocess.run(
        ["bash", str(fsx / "llmft/sbatch/llamafactory-multinode.sbatch")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    srun = [c for c in calls(node) if c.startswith("srun ") and "--help" not in c]
    assert srun == [
        "srun --auto-resume=1 --ntasks-per-node=1 "
        "--container-image=123456789012.dkr.ecr.eu-west-1.amazonaws.com#llmft-train:abc123 "
        f"--container-mounts={fsx}:{fsx} --no-container-mount-home {fsx}/llmft/sbatch/llmft-node.sh"
    ]
    job = fsx / "hyperpod/jobs/run1"
    assert json.loads((job / "input/config/hyperparameters.json").read_text()) == {"recipe": "lora"}
    assert (job / "checkpoints").is_dir() and (job / "model").is_dir()


def test_sbatch_refuses_data_outside_fsx(tmp_path):
    fsx = make_fsx(tmp_path)
    outside = tmp_path / "home-data"
    outside.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "LLMFT_FSX": str(fsx),
        "LLMFT_JOB": "run1",
        "LLMFT_HYPERPARAMETERS": str(fsx / "hyperpod/configs/run.json"),
        "LLMFT_TRAIN_DATA": str(outside),
    }
    result = subprocess.run(
        ["bash", str(fsx / "llmft/sbatch/llamafactory-multinode.sbatch")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and f"{outside} is not under {fsx}" in result.stderr


def test_node_script_lays_out_the_training_contract_and_runs_train(tmp_path):
    fsx = make_fsx(tmp_path)
    job = fsx / "hyperpod/jobs/run1"
    (job / "input/config").mkdir(parents=True)
    (job / "checkpoints").mkdir()
    (job / "model").mkdir()
    train = tmp_path / "train"
    train.write_text(
        textwrap.dedent(
            """\
            #!/bin/bash
            echo "LLMFT_OPT_ML=${LLMFT_OPT_ML}"
            for p in input/config input/data/train input/data/model checkpoints model output; do
              echo "$p -> $(readlink "${LLMFT_OPT_ML}/$p")"
            done
            """
        )
    )
    train.chmod(0o755)
    env = {
        "PATH": os.environ["PATH"],
        "LLMFT_JOB_DIR": str(job),
        "LLMFT_TRAIN_DATA": str(fsx / "datasets/alpaca"),
        "LLMFT_MODEL_DIR": str(fsx / "models/tiny"),
        "SLURM_JOB_ID": "42",
        "SLURM_NODEID": "1",
        "LLMFT_NODE_ROOT": str(tmp_path / "local"),
        "LLMFT_TRAIN_COMMAND": str(train),
    }
    result = subprocess.run(
        ["bash", str(fsx / "llmft/sbatch/llmft-node.sh")], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"LLMFT_OPT_ML={tmp_path}/local/llmft-42", "the work folder stays on the node"
    assert lines[1:] == [
        f"input/config -> {job}/input/config",
        f"input/data/train -> {fsx}/datasets/alpaca",
        f"input/data/model -> {fsx}/models/tiny",
        f"checkpoints -> {job}/checkpoints",
        f"model -> {job}/model",
        f"output -> {job}/output/node-1",
    ]


# --- shell lint ----------------------------------------------------------------------------------------


def test_every_shell_script_is_shellcheck_clean():
    scripts = [*LIFECYCLE.glob("*.sh"), *LIFECYCLE.glob("sbatch/*")]
    assert len(scripts) >= 3, scripts
    shellcheck = Path(sys.executable).parent / "shellcheck"
    result = subprocess.run([str(shellcheck), "-x", *map(str, scripts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
