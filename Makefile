# shipyard: one way in. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | sha256sum | cut -c1-12)
SCENARIOS ?= $(sort $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml))))
PYTEST_ARGS ?=

export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: help venv up down test lint vagrant pytest molecule clean

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --editable .
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP) ## Create .venv with the pinned tools.

up: $(STAMP) ## Bring the dev environment up: ansible-playbook site.yml.
	$(BIN)/ansible-playbook site.yml $(ARGS)

down: $(STAMP) ## Remove the dev environment; PURGE=1 also removes its volumes.
	$(BIN)/ansible-playbook playbooks/down.yml -e down_purge=$(if $(PURGE),true,false) $(ARGS)

# Shell scripts: *.sh, and every file whose first line is a sh or bash shebang.
SHELL_SCRIPTS = git ls-files -co --exclude-standard -z | xargs -0 awk \
	'FNR == 1 { if (FILENAME ~ /\.sh$$/ || /^\#!.*[/ ](ba|da)?sh( |$$)/) print FILENAME; nextfile }'

lint: $(STAMP) ## yamllint, ansible-lint (production profile), ruff, shellcheck.
	$(BIN)/yamllint --strict .
	$(BIN)/ansible-lint --profile production
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@command -v shellcheck >/dev/null || { echo "shellcheck is missing: apt-get install shellcheck" >&2; exit 1; }
	$(SHELL_SCRIPTS) | xargs shellcheck

# `vagrant validate` checks the provider block of the provider it would use,
# and only a usable provider can be used: libvirt always (the vagrant-libvirt
# plugin needs no running libvirtd for this), virtualbox where it is installed.
# A throw-away dotfile dir keeps a real VM's state in .vagrant/ out of it; no
# VM is started and nothing is downloaded.
VAGRANT_PROVIDERS ?= libvirt $(if $(shell command -v VBoxManage 2>/dev/null),virtualbox)

vagrant: ## vagrant validate the Vagrantfile, per provider (offline).
	@command -v vagrant >/dev/null || { echo "vagrant is missing: apt-get install vagrant vagrant-libvirt" >&2; exit 1; }
	@for p in $(VAGRANT_PROVIDERS); do \
	  echo "== vagrant validate ($$p)"; \
	  dot=$$(mktemp -d); \
	  rc=0; VAGRANT_DEFAULT_PROVIDER=$$p VAGRANT_DOTFILE_PATH=$$dot VAGRANT_CHECKPOINT_DISABLE=1 vagrant validate || rc=$$?; \
	  rm -rf "$$dot"; \
	  [ $$rc -eq 0 ] || exit $$rc; \
	done

# pytest exits 5 when it collects nothing: here that means a broken suite, not a pass.
pytest: $(STAMP) ## Run the pytest suite.
	@rc=0; $(BIN)/pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; fi; \
	exit $$rc

molecule: $(STAMP) ## Run every molecule scenario (SCENARIOS="a b" for some).
	@for s in $(SCENARIOS); do \
	  echo "== molecule test -s $$s"; \
	  $(BIN)/molecule test -s $$s; \
	done

test: lint vagrant pytest molecule ## Lint, vagrant validate, pytest and every molecule scenario.

clean: ## Remove .venv and caches (not the dev environment).
	rm -rf $(VENV) .pytest_cache .ruff_cache
