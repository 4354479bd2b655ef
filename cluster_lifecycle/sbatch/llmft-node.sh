#!/bin/bash
# Runs inside the training container on each node: lays out the SageMaker training contract that the
# image's `train` entrypoint reads, then hands over to it (it reads SLURM_* and starts torchrun).
#
# Inputs, checkpoints and the model folder are the job's shared folders on FSx; the entrypoint's work
# folder (normalised data, resolved config) stays on the node so nodes never write the same file.
set -euo pipefail

: "${LLMFT_JOB_DIR:?}" "${LLMFT_TRAIN_DATA:?}" "${SLURM_JOB_ID:?}" "${SLURM_NODEID:?}"
ROOT="${LLMFT_NODE_ROOT:-/tmp}/llmft-${SLURM_JOB_ID}"
rm -rf "${ROOT}"
mkdir -p "${ROOT}/input/data"
ln -s "${LLMFT_JOB_DIR}/input/config" "${ROOT}/input/config"
ln -s "${LLMFT_TRAIN_DATA}" "${ROOT}/input/data/train"
if [[ -n ${LLMFT_VALIDATION_DATA:-} ]]; then
  ln -s "${LLMFT_VALIDATION_DATA}" "${ROOT}/input/data/validation"
fi
if [[ -n ${LLMFT_MODEL_DIR:-} ]]; then
  ln -s "${LLMFT_MODEL_DIR}" "${ROOT}/input/data/model"
fi
# Shared, so a requeued job resumes from the newest complete checkpoint.
ln -s "${LLMFT_JOB_DIR}/checkpoints" "${ROOT}/checkpoints"
ln -s "${LLMFT_JOB_DIR}/model" "${ROOT}/model"
mkdir -p "${LLMFT_JOB_DIR}/output/node-${SLURM_NODEID}"
ln -s "${LLMFT_JOB_DIR}/output/node-${SLURM_NODEID}" "${ROOT}/output"

export LLMFT_OPT_ML="${ROOT}"
exec "${LLMFT_TRAIN_COMMAND:-train}"
