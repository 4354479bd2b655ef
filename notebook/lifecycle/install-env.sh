#!/bin/bash
# Builds the persistent LLaMA-Factory conda environment on the notebook's volume, as ec2-user.
# on-create starts it in the background (lifecycle scripts must finish within 5 minutes; this
# takes 10 to 20); on-start starts it again if an earlier run did not finish.
set -euo pipefail

ROOT="${LLMFT_ROOT:-}"
STATE_DIR="$ROOT/home/ec2-user/SageMaker/.llmft"
ENV_DIR="$STATE_DIR/conda-env"
READY="$STATE_DIR/env-ready"
REQUIREMENTS="$STATE_DIR/requirements-notebook.txt"
# Where conda is depends on the platform image (AL2's anaconda3, elsewhere /opt/conda or PATH).
find_conda() {
  local candidate
  for candidate in "$ROOT/home/ec2-user/anaconda3/bin/conda" "$ROOT/opt/conda/bin/conda" "$(command -v conda || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}
if ! CONDA="$(find_conda)"; then
  echo "$(date -u +%FT%TZ) ERROR: no conda found (looked in /home/ec2-user/anaconda3/bin, /opt/conda/bin" \
    "and PATH); the LLaMA-Factory kernel cannot be built on this platform" >&2
  exit 1
fi
LLAMAFACTORY_VERSION="@@LLAMAFACTORY_VERSION@@"
KERNEL_NAME="llamafactory"

echo "$(date -u +%FT%TZ) building $ENV_DIR (llamafactory==$LLAMAFACTORY_VERSION)"
rm -f "$READY"
# A half-built environment from an interrupted run is not reusable.
rm -rf "$ENV_DIR"
# conda-forge only: the defaults channel has terms of use that many organisations must not accept.
"$CONDA" create --yes --quiet --prefix "$ENV_DIR" --override-channels --channel conda-forge python=3.11

# torch 2.8 wheels are built for CUDA 12.8, which the notebook instances' NVIDIA drivers run; newer
# torch releases default to CUDA 13 and need a newer driver. The other pins match the training image.
cat >"$REQUIREMENTS" <<REQUIREMENTS_TXT
torch==2.8.0
torchvision==0.23.0
torchaudio==2.8.0
llamafactory==$LLAMAFACTORY_VERSION
transformers==5.6.0
tokenizers==0.22.2
peft==0.18.1
trl==0.24.0
accelerate==1.11.0
datasets==4.0.0
bitsandbytes==0.48.2
ipykernel==7.4.0
boto3==1.44.8
REQUIREMENTS_TXT
# The wheels (CUDA libraries included) are several GB: unpack them on the volume, not the small root disk.
mkdir -p "$STATE_DIR/tmp"
TMPDIR="$STATE_DIR/tmp" "$ENV_DIR/bin/python" -m pip install --no-cache-dir --quiet --requirement "$REQUIREMENTS"
rm -rf "$STATE_DIR/tmp"

"$ENV_DIR/bin/python" -m ipykernel install --user --name "$KERNEL_NAME" \
  --display-name "LLaMA-Factory $LLAMAFACTORY_VERSION"
echo "$LLAMAFACTORY_VERSION" >"$READY"
echo "$(date -u +%FT%TZ) environment ready; kernel '$KERNEL_NAME' registered"
