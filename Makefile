# The two commands: `make synth` (install if needed, synthesize every stack with the cdk-nag report)
# and `make test` (the whole suite, lints included). Only Python 3.11, Node 20 and npm are assumed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CDK := node_modules/.bin/cdk
LAMBDA_DEPS := build/lambda-python
# checkov pins older boto3/botocore than the app does: it gets a venv of its own.
CHECKOV_VENV := .venv-checkov
# jsii's banner about Node 20's end of life is noise for a pinned toolchain; no AWS call is made.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export CDK_DISABLE_CLI_TELEMETRY := true
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install synth test lint test-cdk test-image cost clean

install: $(VENV)/.installed node_modules/.installed $(LAMBDA_DEPS)/.installed

# The training image's rules (training_image/llmft_train) are imported by the launcher and the tests;
# its heavy dependencies (torch, llamafactory) are not: they live in .venv-train.
$(VENV)/.installed: requirements.txt requirements-dev.txt training_image/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e training_image
	touch $@

# Wheels for the training pipeline's Lambda functions (Python 3.14 on arm64), copied in at synth.
$(LAMBDA_DEPS)/.installed: requirements-lambda.txt $(VENV)/.installed
	rm -rf $(LAMBDA_DEPS)
	$(BIN)/pip install --quiet --no-deps --no-compile --only-binary=:all: --implementation cp \
		--python-version 3.14 --platform manylinux2014_aarch64 --target $(LAMBDA_DEPS) -r requirements-lambda.txt
	rm -rf $(LAMBDA_DEPS)/bin
	touch $@

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	rm -rf $(CHECKOV_VENV)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --no-deps -r requirements-checkov.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

synth: install
	rm -rf cdk.out
	$(CDK) synth --no-notices --quiet
	$(BIN)/python tools/nag_summary.py cdk.out
	$(BIN)/python -m tools.security_review cdk.out

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test-cdk: synth lint $(CHECKOV_VENV)/.installed
	$(BIN)/cfn-lint --config-file .cfnlintrc.yaml
	$(CHECKOV_VENV)/bin/checkov --config-file .checkov.yaml \
		-f cdk.out/*.template.json cdk.out/security-review/*.template.json
	$(BIN)/pytest tests --ignore=tests/training_image

test-image:
	$(MAKE) -C training_image test

test: test-cdk test-image

# The idle monthly cost of the deployment cdk.json configures, from tools/cost.py's price table.
cost: $(VENV)/.installed
	$(BIN)/python -m tools.cost

clean:
	rm -rf cdk.out $(VENV) .venv-train $(CHECKOV_VENV) node_modules build
