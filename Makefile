# crm-bridge front door. `make test` on a fresh clone builds the virtualenv and runs every check.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
# Python 3.13 (what Lambda runs): pyenv's shim honours .python-version; any python3.13 on PATH works.
PYTHON313 ?= $(shell command -v python3.13 2>/dev/null)
STAMP := $(VENV)/.installed
# SAM CLI and cfn-lint live apart from .venv: SAM pins another pydantic than the layer's.
TOOLS := .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed
# checkov (make security) in a virtualenv of its own too: it pins boto3 exactly, to another than SAM CLI's.
CHECKOV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV)/.installed
# Keep SAM CLI offline: no telemetry, no weekly version check against PyPI, no instance metadata lookups.
SAM := SAM_CLI_TELEMETRY=0 __SAM_CLI_APP_DIR=$(CURDIR)/$(TOOLS)/sam-app AWS_EC2_METADATA_DISABLED=true \
	AWS_REGION=$${AWS_REGION:-eu-central-1} PATH="$(CURDIR)/$(BIN):$$PATH" $(TOOLS)/bin/sam
ENV ?= dev

.PHONY: help venv run tools lint types security validate build system-packages espocrm unit reliability permissions traffic test bench deploy backfill reconcile dlq-inspect dlq-redrive clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml layers/shared/requirements.txt
	@if [ -z "$(PYTHON313)" ] || ! "$(PYTHON313)" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then \
		echo "error: Python 3.13 is required (Lambda runs python3.13) but no working python3.13 was found." >&2; \
		echo "       Install it (e.g. 'pyenv install 3.13') or run: make PYTHON313=/path/to/python3.13 ..." >&2; \
		exit 1; \
	fi
	@[ -x $(BIN)/python ] || "$(PYTHON313)" -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c layers/shared/requirements.txt -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP) ## create/refresh the virtualenv in .venv

run: $(STAMP) ## the whole system on 127.0.0.1, no AWS, no Docker: API, queue, DLQ, worker, demo (PORT=3000)
	@$(BIN)/python -m infra.local $(if $(PORT),--port $(PORT))

$(TOOLS_STAMP): requirements-deploy.txt | $(STAMP)
	@[ -x $(TOOLS)/bin/python ] || "$(PYTHON313)" -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-deploy.txt
	@mkdir -p $(TOOLS)/sam-app
	@echo '{"telemetryEnabled": false, "lastVersionCheck": 4102444800}' > $(TOOLS)/sam-app/metadata.json
	@touch $(TOOLS_STAMP)

$(CHECKOV_STAMP): requirements-checkov.txt | $(STAMP)
	@[ -x $(CHECKOV)/bin/python ] || "$(PYTHON313)" -m venv $(CHECKOV)
	$(CHECKOV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	@touch $(CHECKOV_STAMP)

tools: $(TOOLS_STAMP) $(CHECKOV_STAMP) ## create/refresh SAM CLI and cfn-lint in .venv-tools, checkov in .venv-checkov

lint: $(STAMP) ## ruff: style and common bugs
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP) ## mypy (strict on the shared layer)
	$(BIN)/mypy

security: $(STAMP) $(CHECKOV_STAMP) ## bandit on the code, checkov on the templates: clean, or each exception justified in place
	$(BIN)/bandit -c pyproject.toml -q -r layers/shared/crm_bridge functions infra
	time $(CHECKOV)/bin/checkov --quiet --compact --skip-download --framework cloudformation \
		-f template.yaml -f infra/ecs/espocrm.yaml

build: $(STAMP) $(TOOLS_STAMP) ## sam build (arm64 wheels, no Docker), then bytecode; SNAPSTART=1: SnapStart for the API
	$(SAM) build
	$(BIN)/python -m infra.build_output $(if $(SNAPSTART),--snapstart) .aws-sam/build

validate: $(STAMP) $(TOOLS_STAMP) ## template checks: cfn-lint, sam validate --lint, then sam build
	AWS_REGION=$${AWS_REGION:-eu-central-1} $(TOOLS)/bin/cfn-lint template.yaml infra/ecs/espocrm.yaml
	$(SAM) validate --lint
	$(MAKE) --no-print-directory build

# Debian packages some tests drive: chromium (the end-to-end browser test; Playwright never downloads
# a browser), caddy (`caddy validate` on the EspoCRM Caddyfile), and PHP 8.2 + MariaDB for the real
# EspoCRM 8.4.2 the contract, end-to-end and fault tests run against (infra/espocrm/local.py: it is
# installed once per machine from shared/espocrm's tarball into ~/.cache/crm-bridge). Installed where
# apt-get can run as root (CI); elsewhere those tests are skipped, saying why.
SYSTEM_PACKAGES := chromium caddy
ESPOCRM_PACKAGES := php8.2-cli php8.2-mysql php8.2-mbstring php8.2-zip php8.2-gd php8.2-intl php8.2-xml \
	php8.2-curl php8.2-bcmath mariadb-server
ESPOCRM_TARBALL ?= $(CURDIR)/../shared/espocrm/espocrm-8.4.2.tar.gz

system-packages: ## Debian's chromium, caddy, PHP and MariaDB for the browser, Caddyfile and real-EspoCRM tests (root)
	@missing=$$(for p in $(SYSTEM_PACKAGES); do command -v $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -f "$(ESPOCRM_TARBALL)" ]; then \
		missing="$$missing $$(for p in $(ESPOCRM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done)"; fi; \
	missing=$$(echo $$missing); \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing $$missing (apt-get) for the browser, Caddyfile and real-EspoCRM tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else echo "note: $$missing not installed (sudo apt-get install $$missing); their tests will be skipped"; fi

espocrm: $(STAMP) ## a real EspoCRM 8.4.2 on 127.0.0.1, provisioned, for make run against the real CRM (Ctrl-C stops it)
	@ESPOCRM_TARBALL=$(ESPOCRM_TARBALL) $(BIN)/python -m infra.espocrm.local

unit: $(STAMP) ## the test suite only
	$(BIN)/pytest -q

traffic: $(STAMP) ## the full traffic mix (bots, previews, a flood, 200 people in Chromium); figures into docs/traffic.md
	TRAFFIC_REPORT=docs/traffic.md $(BIN)/pytest -q -s tests/e2e/test_traffic.py

reliability: $(STAMP) ## rerun the fault-injection run and write its figures into docs/reliability.md (FAULT_SEED=...)
	RELIABILITY_REPORT=docs/reliability.md $(BIN)/pytest -q -s tests/faults/test_fault_injection.py

permissions: $(STAMP) ## each action of each policy taken away in turn: its named test must fail, refused it (docs/reliability.md)
	PERMISSIONS_REPORT=docs/reliability.md $(BIN)/pytest -q tests/e2e/test_permissions.py

test: lint types security validate system-packages unit ## every check: lint, types, security, template and build, the whole test suite

# Not part of `make test`: it measures (about 25 minutes, most of it a 1,000-operation drain into a
# Bitrix24-like portal at 2 requests/s; QUICK=1 a few) and asserts nothing about time.
bench: build ## cold starts, warm overhead, backlog drain, backfill rate, sizes: one table; then the cost (docs/performance.md); QUICK=1
	$(BIN)/python -m bench $(if $(QUICK),--quick)

deploy: validate ## sam deploy --config-env ENV (ENV=dev by default, or prod; needs AWS credentials)
	$(SAM) deploy --config-env $(ENV)

# The migration between the CRMs (docs/migration.md). Both CRMs configured as for the functions:
# ESPOCRM_URL, ESPOCRM_API_KEY (or _PARAM), BITRIX24_WEBHOOK_URL (or _PARAM).
FROM ?= bitrix24
TO ?= espocrm

backfill: $(STAMP) ## copy every lead of FROM into TO with its comments (FROM=bitrix24 TO=espocrm; ARGS="--dry-run", "--since 2026-12-01")
	$(BIN)/python -m crm_bridge.migrate backfill --from $(FROM) --to $(TO) $(ARGS)

reconcile: $(STAMP) ## compare FROM and TO: leads only in one, mapped fields that differ (CSV report)
	$(BIN)/python -m crm_bridge.migrate reconcile --from $(FROM) --to $(TO) $(ARGS)

dlq-inspect: $(STAMP) ## DLQ: count, oldest, errors by reason (STACK=<stack> or CRM_DLQ_URL=<url>)
	$(BIN)/python -m crm_bridge.delivery.dead_letters inspect $(if $(STACK),--stack $(STACK))

dlq-redrive: $(STAMP) ## DLQ -> queue after a fix (STACK=<stack> or CRM_DLQ_URL and CRM_QUEUE_URL)
	$(BIN)/python -m crm_bridge.delivery.dead_letters redrive $(if $(STACK),--stack $(STACK))

clean: ## remove the virtualenvs, caches and the SAM build
	rm -rf $(VENV) $(TOOLS) $(CHECKOV) .pytest_cache .mypy_cache .ruff_cache .aws-sam
