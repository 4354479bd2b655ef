#!/bin/bash
# Notebook lifecycle, on every start (as root): the LLaMA-Factory kernel, the example notebooks, the
# settings the examples read, and the idle auto-stop. Only the root volume is reset on a restart;
# /home/ec2-user/SageMaker persists, so kernel specs, crontab and /usr/local/bin are redone each time.
set -euo pipefail

ROOT="${LLMFT_ROOT:-}"
NOTEBOOK_USER="ec2-user"
SAGEMAKER_DIR="$ROOT/home/ec2-user/SageMaker"
STATE_DIR="$SAGEMAKER_DIR/.llmft"
ENV_DIR="$STATE_DIR/conda-env"
EXAMPLES_DIR="$SAGEMAKER_DIR/llmft-examples"
METADATA="$ROOT/opt/ml/metadata/resource-metadata.json"
PYTHON3="$ROOT/usr/bin/python3"
IDLE_CHECK="$ROOT/usr/local/bin/llmft-idle-check"
IDLE_LOG="$ROOT/var/log/llmft-idle-check.log"
SYSTEMD_DIR="$ROOT/etc/systemd/system"

DATA_BUCKET="@@DATA_BUCKET@@"
EXAMPLES_PREFIX="@@EXAMPLES_PREFIX@@"
TRAINING_STATE_MACHINE_ARN="@@TRAINING_STATE_MACHINE_ARN@@"
IDLE_TIMEOUT_MINUTES="@@IDLE_TIMEOUT_MINUTES@@"
KERNEL_NAME="llamafactory"

as_user() {
  sudo -u "$NOTEBOOK_USER" -H -- env LLMFT_ROOT="$ROOT" "$@"
}

metadata() {
  "$PYTHON3" -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$METADATA" "$1"
}

install_running() {
  local pid
  pid="$(cat "$STATE_DIR/install.pid" 2>/dev/null || true)"
  # The command line, not only the pid: after a stop and start the pid may belong to anything.
  [ -n "$pid" ] && grep -qs "install-env.sh" "/proc/$pid/cmdline"
}

register_kernel() {
  if [ -f "$STATE_DIR/env-ready" ]; then
    # Kernel specs live in the home directory, outside the persistent volume.
    as_user "$ENV_DIR/bin/python" -m ipykernel install --user --name "$KERNEL_NAME" \
      --display-name "LLaMA-Factory $(cat "$STATE_DIR/env-ready")"
    echo "kernel '$KERNEL_NAME' registered"
  elif install_running; then
    echo "LLaMA-Factory environment still installing; the install registers the kernel when done"
  elif [ -f "$STATE_DIR/install-env.sh" ]; then
    # The instance stopped (or the install failed) before the environment was complete.
    echo "LLaMA-Factory environment incomplete; installing again in the background"
    nohup sudo -u "$NOTEBOOK_USER" -H -- env LLMFT_ROOT="$ROOT" bash "$STATE_DIR/install-env.sh" \
      >>"$STATE_DIR/install.log" 2>&1 &
    echo "$!" >"$STATE_DIR/install.pid"
  fi
}

write_settings() {
  "$PYTHON3" - "$STATE_DIR/settings.json" "$REGION" "$DATA_BUCKET" "$TRAINING_STATE_MACHINE_ARN" \
    "$EXAMPLES_DIR" <<'SETTINGS_PY'
import json
import sys

path, region, bucket, state_machine_arn, examples_dir = sys.argv[1:6]
settings = {
    "region": region,
    "data_bucket": bucket,
    "training_state_machine_arn": state_machine_arn or None,
    "examples_dir": examples_dir,
}
with open(path, "w") as out:
    json.dump(settings, out, indent=2)
    out.write("\n")
SETTINGS_PY
}

copy_examples() {
  local staging="$STATE_DIR/examples-latest"
  mkdir -p "$staging"
  if ! aws s3 sync --only-show-errors --delete --region "$REGION" \
    "s3://$DATA_BUCKET/$EXAMPLES_PREFIX" "$staging"; then
    echo "WARNING: could not copy the example notebooks from s3://$DATA_BUCKET/$EXAMPLES_PREFIX" >&2
    return 0
  fi
  # Only files the user does not have yet: edited examples survive restarts and redeploys.
  (cd "$staging" && find . -type f) | while read -r file; do
    target="$EXAMPLES_DIR/${file#./}"
    if [ ! -e "$target" ]; then
      mkdir -p "$(dirname "$target")"
      cp "$staging/$file" "$target"
    fi
  done
  echo "example notebooks in $EXAMPLES_DIR"
}

# The idle check runs from cron or systemd with a minimal PATH: it gets the CLI's full path.
find_aws() {
  local candidate
  for candidate in "$(command -v aws || true)" "$ROOT/usr/local/bin/aws" "$ROOT/usr/bin/aws" \
    "$ROOT/home/ec2-user/anaconda3/bin/aws" "$ROOT/opt/conda/bin/aws"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

schedule_idle_check() {
  local aws_cli
  if ! aws_cli="$(find_aws)"; then
    # Failing the start is better than an instance that runs, and bills, with nothing to stop it.
    echo "ERROR: no aws CLI found (PATH, /usr/local/bin, /usr/bin, anaconda3, /opt/conda): the idle" \
      "auto-stop could not stop this instance, so it is not started" >&2
    exit 1
  fi
  local command="$PYTHON3 $IDLE_CHECK --idle-minutes $IDLE_TIMEOUT_MINUTES --notebook-name $NOTEBOOK_NAME"
  command="$command --region $REGION --state-dir $STATE_DIR --aws-cli $aws_cli"
  if command -v crontab >/dev/null; then
    { crontab -l 2>/dev/null || true; } | { grep -v "llmft-idle-check" || true; } >"$STATE_DIR/crontab.new"
    echo "*/5 * * * * $command >>$IDLE_LOG 2>&1" >>"$STATE_DIR/crontab.new"
    crontab "$STATE_DIR/crontab.new"
    rm -f "$STATE_DIR/crontab.new"
    echo "idle check scheduled with cron every 5 minutes"
  else
    # Amazon Linux 2023 ships without cron; a systemd timer does the same job.
    mkdir -p "$SYSTEMD_DIR"
    cat >"$SYSTEMD_DIR/llmft-idle-check.service" <<SERVICE
[Unit]
Description=Stop this notebook instance after $IDLE_TIMEOUT_MINUTES idle minutes

[Service]
Type=oneshot
ExecStart=$command
SERVICE
    cat >"$SYSTEMD_DIR/llmft-idle-check.timer" <<TIMER
[Unit]
Description=Run the notebook idle check every 5 minutes

[Timer]
OnBootSec=5min
OnUnitActiveSec=5min

[Install]
WantedBy=timers.target
TIMER
    systemctl daemon-reload
    systemctl enable --now llmft-idle-check.timer
    echo "idle check scheduled with a systemd timer every 5 minutes"
  fi
}

install_idle_check() {
  mkdir -p "$(dirname "$IDLE_CHECK")" "$(dirname "$IDLE_LOG")"
  cat >"$IDLE_CHECK" <<'IDLE_CHECK_PY'
@@IDLE_CHECK_PY@@
IDLE_CHECK_PY
  chmod 755 "$IDLE_CHECK"
  if [ "$IDLE_TIMEOUT_MINUTES" -gt 0 ]; then
    schedule_idle_check
  else
    echo "idle auto-stop is off (idle_timeout_minutes = 0)"
  fi
}

NOTEBOOK_NAME="$(metadata ResourceName)"
REGION="$(metadata ResourceArn | cut -d: -f4)"
mkdir -p "$STATE_DIR" "$EXAMPLES_DIR"
# The idle check counts idle time from this start at the earliest.
date -u +%s >"$STATE_DIR/started-at"
write_settings
copy_examples
register_kernel || echo "WARNING: the LLaMA-Factory kernel could not be registered" >&2
# Not -R on the state folder: the environment in it is ec2-user's already and holds many thousand files.
chown "$NOTEBOOK_USER:$NOTEBOOK_USER" "$STATE_DIR"
chown -R "$NOTEBOOK_USER:$NOTEBOOK_USER" "$EXAMPLES_DIR"
install_idle_check
