#!/bin/bash
# HyperPod OnCreate entry point: runs on every node when it is created or replaced.
#
# Steps run in order, each idempotent, each logging to $LOG_DIR/<step>.log; the first failure stops
# the script with the step's name (HyperPod then reports the node as failed). Nothing is downloaded
# from the internet: the tools come with the HyperPod AMI; Docker alone may come from the OS
# package repository if the AMI lacks it.
#
# Paths are overridable for tests: LLMFT_ROOT prefixes every system path, and the commands that
# change the system (mount, systemctl, usermod, apt-get, ...) are looked up on PATH.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="${LLMFT_ROOT:-}"
PYTHON="${LLMFT_PYTHON:-python3}"
LOG_DIR="${ROOT}/var/log/llmft"
STATE_DIR="${ROOT}/etc/llmft"
# Ours, not HyperPod's: Slurm is configured by HyperPod from the cluster's API request (SlurmConfig).
PARAMS="${HERE}/llmft_parameters.json"
RESOURCE_CONFIG="${SAGEMAKER_RESOURCE_CONFIG_PATH:-${ROOT}/opt/ml/config/resource_config.json}"
SLURM_ETC="${ROOT}/opt/slurm/etc"
# HyperPod mounts the instance group's extra EBS volume here: local scratch for containers.
LOCAL_DIR="${ROOT}/opt/sagemaker"
CLUSTER_USERS="${LLMFT_USERS:-ubuntu}"
MOUNT_ATTEMPTS="${LLMFT_MOUNT_ATTEMPTS:-10}"
SLURM_CONF_ATTEMPTS="${LLMFT_SLURM_CONF_ATTEMPTS:-60}"
SLURMCTLD_ATTEMPTS="${LLMFT_SLURMCTLD_ATTEMPTS:-30}"
RETRY_SECONDS="${LLMFT_RETRY_SECONDS:-10}"
PYXIS_PLUGIN_CANDIDATES=(
  "${ROOT}/usr/local/lib/slurm/spank_pyxis.so"
  "${ROOT}/opt/slurm/lib/slurm/spank_pyxis.so"
  "${ROOT}/usr/lib/x86_64-linux-gnu/slurm/spank_pyxis.so"
)

mkdir -p "${LOG_DIR}" "${STATE_DIR}"

log() {
  printf '%s llmft lifecycle: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" | tee -a "${LOG_DIR}/on_create.log" >&2
}

# Runs one step with errexit on, its output in its own log; stops everything if it fails.
run_step() {
  local name=$1 code
  shift
  log "step ${name}: start"
  set +e
  (set -e; "$@") >>"${LOG_DIR}/${name}.log" 2>&1
  code=$?
  set -e
  if [[ ${code} -ne 0 ]]; then
    log "step ${name}: FAILED with exit code ${code}; last lines of ${LOG_DIR}/${name}.log:"
    tail -n 20 "${LOG_DIR}/${name}.log" >&2 || true
    exit "${code}"
  fi
  log "step ${name}: done"
}

# Writes a file only when its content changes; returns 0 if it changed.
write_if_changed() {
  local target=$1 content=$2
  if [[ -f ${target} ]] && [[ "$(cat "${target}")" == "${content%$'\n'}" ]]; then
    return 1
  fi
  mkdir -p "$(dirname "${target}")"
  printf '%s\n' "${content%$'\n'}" >"${target}"
  return 0
}

render() {
  "${PYTHON}" "${HERE}/llmft_lifecycle.py" "$1" --params "${PARAMS}" \
    --resource-config "${RESOURCE_CONFIG}" --address "${NODE_ADDRESS}" "${@:2}"
}

step_plan() {
  local address="${LLMFT_NODE_ADDRESS:-}"
  local args=(plan --params "${PARAMS}" --resource-config "${RESOURCE_CONFIG}")
  if [[ -n ${address} ]]; then
    args+=(--address "${address}")
  fi
  "${PYTHON}" "${HERE}/llmft_lifecycle.py" "${args[@]}" >"${STATE_DIR}/node.env"
  cat "${STATE_DIR}/node.env"
}

step_mount_fsx() {
  local target="${ROOT}${FSX_MOUNT_POINT}" attempt
  # HyperPod mounts the file system itself (FsxLustreConfig of the instance group); this step waits
  # for nothing more and only mounts it where that did not happen.
  if mountpoint -q "${target}"; then
    echo "FSx for Lustre is already mounted at ${FSX_MOUNT_POINT}"
    return 0
  fi
  modprobe lustre
  mkdir -p "${target}"
  local line
  line="$(render fstab)"
  if ! grep -qF "${line}" "${ROOT}/etc/fstab" 2>/dev/null; then
    mkdir -p "${ROOT}/etc"
    printf '%s\n' "${line}" >>"${ROOT}/etc/fstab"
  fi
  for ((attempt = 1; attempt <= MOUNT_ATTEMPTS; attempt++)); do
    if mountpoint -q "${target}"; then
      echo "FSx for Lustre is mounted at ${FSX_MOUNT_POINT}"
      return 0
    fi
    echo "mount attempt ${attempt}/${MOUNT_ATTEMPTS}"
    mount -t lustre -o noatime,flock "${FSX_DNS_NAME}@tcp:/${FSX_MOUNT_NAME}" "${target}" \
      || sleep "${RETRY_SECONDS}"
  done
  mountpoint -q "${target}" || { echo "FSx for Lustre did not mount after ${MOUNT_ATTEMPTS} attempts"; return 1; }
}

step_home_folders() {
  local user home
  for user in ${CLUSTER_USERS}; do
    if ! id "${user}" >/dev/null 2>&1; then
      echo "no user ${user} on this node; skipped"
      continue
    fi
    home="${FSX_MOUNT_POINT}/home/${user}"
    # Only a new home gets the skeleton and a recursive chown; a home full of data is left as it is.
    if [[ ! -d ${ROOT}${home} ]]; then
      mkdir -p "${ROOT}${home}"
      if [[ -d ${ROOT}/etc/skel ]]; then
        cp -r "${ROOT}/etc/skel/." "${ROOT}${home}/"
      fi
      chown -R "${user}:" "${ROOT}${home}"
    fi
    if [[ "$(getent passwd "${user}" | cut -d: -f6)" != "${home}" ]]; then
      usermod --home "${home}" "${user}"
    fi
  done
}

step_docker() {
  if ! command -v docker >/dev/null 2>&1; then
    # The one package that may come from the OS repository (Ubuntu's docker.io), never a website.
    apt-get install -y -o DPkg::Lock::Timeout=120 docker.io
  fi
  mkdir -p "${LOCAL_DIR}/docker"
  # Merged, not replaced: the image's own settings (runtimes, log options) stay.
  local merged
  merged="$("${PYTHON}" "${HERE}/llmft_lifecycle.py" docker-daemon-json \
    --existing "${ROOT}/etc/docker/daemon.json" --data-root "${LOCAL_DIR#"${ROOT}"}/docker")"
  if write_if_changed "${ROOT}/etc/docker/daemon.json" "${merged}"; then
    systemctl restart docker
  fi
  systemctl enable --now docker
  local user
  for user in ${CLUSTER_USERS}; do
    if id "${user}" >/dev/null 2>&1; then
      usermod -aG docker "${user}"
    fi
  done
}

pyxis_plugin() {
  local candidate
  for candidate in "${PYXIS_PLUGIN_CANDIDATES[@]}"; do
    if [[ -f ${candidate} ]]; then
      echo "${candidate#"${ROOT}"}"
      return 0
    fi
  done
  return 1
}

step_enroot_pyxis() {
  if ! command -v enroot >/dev/null 2>&1; then
    local debs=("${HERE}"/artifacts/enroot*.deb)
    if [[ ! -f ${debs[0]} ]]; then
      echo "enroot is not on this AMI and no artifacts/enroot*.deb was staged next to on_create.sh"
      return 1
    fi
    apt-get install -y -o DPkg::Lock::Timeout=120 "${debs[@]}"
  fi
  local scratch="${LOCAL_DIR#"${ROOT}"}"
  write_if_changed "${ROOT}/etc/enroot/enroot.conf" "$(render enroot-conf --local-dir "${scratch}")" || true
  write_if_changed "${ROOT}/etc/enroot/llmft/.credentials" "$(render enroot-credentials)" || true
  mkdir -p "${LOCAL_DIR}/enroot/runtime" "${LOCAL_DIR}/enroot/data" "${LOCAL_DIR}/enroot/tmp" \
    "${ROOT}${FSX_MOUNT_POINT}/llmft/enroot-cache"
  chmod 1777 "${LOCAL_DIR}/enroot/runtime" "${LOCAL_DIR}/enroot/data" "${LOCAL_DIR}/enroot/tmp" \
    "${ROOT}${FSX_MOUNT_POINT}/llmft/enroot-cache"
  configure_pyxis
}

# Every node reads its own plugin stack (srun on login nodes, slurmd on workers, slurmctld): each one
# gets pyxis exactly once, whether or not its image already loads it.
configure_pyxis() {
  local ours="${SLURM_ETC}/plugstack.conf.d/pyxis.conf" loaded_by plugin
  if loaded_by="$("${PYTHON}" "${HERE}/llmft_lifecycle.py" pyxis-loaded --root "${ROOT:-/}" \
    --plugstack "${SLURM_ETC#"${ROOT}"}/plugstack.conf" --ours "${ours#"${ROOT}"}")"; then
    echo "pyxis is already loaded by ${loaded_by}; this node's plugin stack is left as the image has it"
    rm -f "${ours}"
    return 0
  fi
  if ! plugin="$(pyxis_plugin)"; then
    echo "pyxis (spank_pyxis.so) is not on this AMI; looked in: ${PYXIS_PLUGIN_CANDIDATES[*]}"
    return 1
  fi
  write_if_changed "${ours}" "$(render pyxis-conf --plugin "${plugin}")" || true
  local include="include ${SLURM_ETC#"${ROOT}"}/plugstack.conf.d/*.conf"
  if ! grep -qxF "${include}" "${SLURM_ETC}/plugstack.conf" 2>/dev/null; then
    printf '%s\n' "${include}" >>"${SLURM_ETC}/plugstack.conf"
  fi
}

wait_for_slurm_conf() {
  # HyperPod writes slurm.conf from the cluster's SlurmConfig; the controller needs it first.
  local attempt first="${CONTROLLER_ADDRESSES%%,*}"
  for ((attempt = 1; attempt <= SLURM_CONF_ATTEMPTS; attempt++)); do
    if grep -qs "${first}" "${SLURM_ETC}/slurm.conf"; then
      return 0
    fi
    sleep "${RETRY_SECONDS}"
  done
  echo "${SLURM_ETC}/slurm.conf never named the controller ${first}"
  return 1
}

# slurmctld takes a moment to answer after a restart: ask again, for a bounded time.
wait_for_slurmctld() {
  local attempt
  for ((attempt = 1; attempt <= SLURMCTLD_ATTEMPTS; attempt++)); do
    if scontrol ping; then
      return 0
    fi
    echo "slurmctld not answering yet (attempt ${attempt}/${SLURMCTLD_ATTEMPTS})"
    sleep "${RETRY_SECONDS}"
  done
  echo "slurmctld did not answer scontrol ping after ${SLURMCTLD_ATTEMPTS} attempts"
  return 1
}

step_slurm() {
  case ${NODE_ROLE} in
    controller)
      wait_for_slurm_conf
      systemctl enable slurmctld
      systemctl restart slurmctld
      wait_for_slurmctld
      ;;
    worker)
      systemctl enable slurmd
      # A restart, not a start: slurmd must load the plugin stack configured above.
      systemctl restart slurmd
      ;;
    *)
      # Login nodes run no Slurm daemon; srun reads the plugin stack when a user runs it.
      echo "no Slurm daemon on a ${NODE_ROLE} node"
      ;;
  esac
}

step_shared_files() {
  # The controller publishes the job scripts and the image to run on FSx, for every node and user.
  local shared="${ROOT}${FSX_MOUNT_POINT}/llmft"
  mkdir -p "${shared}/sbatch" "${ROOT}${FSX_MOUNT_POINT}/hyperpod/jobs" "${ROOT}${FSX_MOUNT_POINT}/hyperpod/logs"
  chmod 1777 "${ROOT}${FSX_MOUNT_POINT}/hyperpod/jobs" "${ROOT}${FSX_MOUNT_POINT}/hyperpod/logs"
  cp -f "${HERE}"/sbatch/* "${shared}/sbatch/"
  write_if_changed "${shared}/cluster.env" "$(render cluster-env)" || true
}

step_log_rotation() {
  write_if_changed "${ROOT}/etc/logrotate.d/llmft" "$(render logrotate --log-dir "${LOG_DIR#"${ROOT}"}")" || true
}

main() {
  log "starting in ${HERE}"
  run_step plan step_plan
  # shellcheck source=/dev/null
  source "${STATE_DIR}/node.env"
  log "node ${NODE_ADDRESS} is the ${NODE_ROLE} (group ${NODE_GROUP})"
  run_step mount_fsx step_mount_fsx
  # Everything below uses FSx, so it only runs once the mount is up.
  run_step home_folders step_home_folders
  run_step docker step_docker
  run_step enroot_pyxis step_enroot_pyxis
  if [[ ${NODE_ROLE} == controller ]]; then
    run_step shared_files step_shared_files
  fi
  run_step slurm step_slurm
  run_step log_rotation step_log_rotation
  log "all steps done"
}

main "$@"
