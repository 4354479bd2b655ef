#!/bin/bash
# Notebook lifecycle, on create (once per instance): starts building the persistent LLaMA-Factory
# environment in the background, because a lifecycle script running over 5 minutes fails the instance.
set -euo pipefail

ROOT="${LLMFT_ROOT:-}"
NOTEBOOK_USER="ec2-user"
STATE_DIR="$ROOT/home/ec2-user/SageMaker/.llmft"
INSTALL_SCRIPT="$STATE_DIR/install-env.sh"

mkdir -p "$STATE_DIR"
cat >"$INSTALL_SCRIPT" <<'INSTALL_ENV_SH'
@@INSTALL_ENV_SH@@
INSTALL_ENV_SH
chmod 755 "$INSTALL_SCRIPT"
chown -R "$NOTEBOOK_USER:$NOTEBOOK_USER" "$STATE_DIR"

# nohup and &: the install outlives this script; its log stays on the volume.
nohup sudo -u "$NOTEBOOK_USER" -H -- env LLMFT_ROOT="$ROOT" bash "$INSTALL_SCRIPT" \
  >>"$STATE_DIR/install.log" 2>&1 &
echo "$!" >"$STATE_DIR/install.pid"
echo "LLaMA-Factory environment install started in the background; log: $STATE_DIR/install.log"
