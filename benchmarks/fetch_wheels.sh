#!/usr/bin/env bash
# Gathers the wheels the GPU machine needs (it has no network; Python 3.12, torch 2.11 cu130 already there).
# Run from the repository root on a machine with PyPI access. All three folders are git-ignored
# (.gitignore has .whl/; add /.whl-qlora/ and /.whl-ds/ to .git/info/exclude).
#   .whl        pure-Python pins beside llamafactory 0.9.5 (ARCHITECTURE.md's list), ~17 MB
#   .whl-qlora  bitsandbytes 0.50.2 repacked with only its CUDA 13.0 + CPU libraries (43 MB -> 3.5 MB)
#   .whl-ds     DeepSpeed 0.19.8 built here as a wheel (PyPI has only an sdist) + its missing deps
set -euo pipefail
REPO=$PWD
PLAT="--no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
 --platform manylinux2014_x86_64 --platform manylinux1_x86_64"
mkdir -p .whl .whl-qlora .whl-ds
# shellcheck disable=SC2086
python3 -m pip download $PLAT -d .whl llamafactory==0.9.5 transformers==5.6.0 tokenizers==0.22.2 peft==0.18.1 \
  trl==0.24.0 accelerate==1.11.0 datasets==4.0.0 dill==0.3.8 multiprocess==0.70.16 fsspec==2025.3.0 \
  omegaconf==2.3.0 liger-kernel==0.8.5
# omegaconf needs antlr4-python3-runtime 4.9.*, published only as an sdist: build the (pure-Python) wheel
python3 -m pip wheel --no-deps -w .whl antlr4-python3-runtime==4.9.3

tmp=$(mktemp -d)
# shellcheck disable=SC2086
python3 -m pip download $PLAT -d "$tmp" bitsandbytes==0.50.2
(cd "$tmp" && unzip -q bitsandbytes-*.whl \
  && find bitsandbytes -name "libbitsandbytes_*.so" ! -name "*cuda130.so" ! -name "*cpu.so" -delete \
  && tar czf - bitsandbytes bitsandbytes-0.50.2.dist-info) > .whl-qlora/bitsandbytes-0.50.2-cu130only.tgz

# DeepSpeed: no ops pre-built (DS_BUILD_OPS=0); ZeRO-3 with the Trainer's own AdamW needs none.
# Building needs a Python with torch importable (any CPU torch) and --no-build-isolation.
python3 -m pip download --no-deps --no-binary=:all: -d "$tmp" deepspeed==0.19.8
(cd "$tmp" && tar xzf deepspeed-0.19.8.tar.gz && cd deepspeed-0.19.8 \
  && DS_BUILD_OPS=0 "${TORCH_PYTHON:-python3}" -m pip wheel --no-deps --no-build-isolation -w "$REPO/.whl-ds" .)
# shellcheck disable=SC2086
python3 -m pip download $PLAT -d .whl-ds pydantic==2.14.4 pydantic-core==2.50.5 hjson==3.1.0 annotated-types==0.8.0 \
  typing-inspection==0.4.5 typing_extensions==4.16.0
rm -rf "$tmp"
du -sh .whl .whl-qlora .whl-ds
