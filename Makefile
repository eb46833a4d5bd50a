# shipyard: one way in. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml VERSION | sha256sum | cut -c1-12)
# The test tools, on top: the targets that run the stack need only STAMP.
TEST_STAMP := $(VENV)/.installed-test-$(shell cat requirements-test.txt requirements.txt pyproject.toml VERSION | sha256sum | cut -c1-12)
# Longest first, so that the scenarios run side by side end close together
# (molecule/run.sh); every other scenario follows them.
MOLECULE_LONGEST := backup default logging provision
SCENARIOS ?= $(MOLECULE_LONGEST) $(filter-out $(MOLECULE_LONGEST),$(sort $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml)))))
PYTEST_ARGS ?=

export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(CURDIR)/$(BIN):$(PATH)
# Every Ansible run under make, molecule's included (they bring their own
# ansible.cfg), keeps its output and every task result in .shipyard/logs,
# where `make scan` looks for secrets (see ansible.cfg).
LOGS := $(CURDIR)/.shipyard/logs
# Private to root: Ansible would create ansible.log 0644, and earlier
# versions of this file let it (results.jsonl is created 0600 by its callback).
$(shell mkdir -p $(LOGS) && chmod 0700 $(LOGS) && touch $(LOGS)/ansible.log && chmod 0600 $(LOGS)/ansible.log)
export ANSIBLE_LOG_PATH ?= $(LOGS)/ansible.log
export ANSIBLE_CALLBACK_PLUGINS ?= $(CURDIR)/plugins/callback
export ANSIBLE_CALLBACKS_ENABLED ?= results_log
export SHIPYARD_RESULTS_LOG ?= $(LOGS)/results.jsonl

.PHONY: help venv venv-stack up down test test-host lint vagrant pytest molecule scan clean report backup backups restore

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# uv installs the pinned sets: pip took 19 to 35 s over the stack's set on
# a fresh machine, unpacking the ansible bundle's 16,500 files one at a time,
# and uv takes 3 s. pip installs uv itself, at the version requirements.txt
# pins (as a constraint, so the pin is written once).
# Bytecode is written once, here: where PYTHONDONTWRITEBYTECODE is set (as
# on the CI machines) nothing else would write it, and every Ansible worker
# would compile the plugins it loads again (a warm make up took 19 s instead
# of 14). Only what runs is compiled: the ansible bundle's collections are
# 15,000 of the 16,500 files, and compiling them all cost a first install
# 17 s. COMPILED_COLLECTIONS are those the plays and roles name
# (tests/test_make_venv.py keeps the list complete).
PIP_INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile
UV_INSTALL := $(BIN)/uv pip install --quiet --python $(BIN)/python
COMPILED_COLLECTIONS := ansible/utils community/crypto community/docker community/general community/mysql community/postgresql
define compile_venv
	site=$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	find "$$site" -mindepth 1 -maxdepth 1 ! -name ansible_collections -print0 \
		| xargs -0 $(BIN)/python -m compileall -q -j0 $(addprefix "$$site"/ansible_collections/,$(COMPILED_COLLECTIONS)) >/dev/null
endef

$(STAMP): requirements.txt pyproject.toml VERSION
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --constraint requirements.txt uv
	$(UV_INSTALL) -r requirements.txt
	$(UV_INSTALL) --no-deps --editable .
	$(compile_venv)
	rm -f $(VENV)/.installed-[0-9a-f]*
	touch $@

$(TEST_STAMP): $(STAMP) requirements-test.txt
	$(UV_INSTALL) -r requirements-test.txt
	$(compile_venv)
	rm -f $(VENV)/.installed-test-*
	touch $@

# npm's fluent-logger, the independent client of the log collector's tests,
# pinned by the lock file and installed next to it (node_modules is ignored).
INTEROP := tests/logs/interop
NODE_STAMP := $(INTEROP)/node_modules/.installed-$(shell sha256sum $(INTEROP)/package-lock.json | cut -c1-12)

$(NODE_STAMP): $(INTEROP)/package.json $(INTEROP)/package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing: make test-host installs it (apt-get install nodejs npm)" >&2; exit 1; }
	npm ci --prefix $(INTEROP) --no-audit --no-fund --loglevel=error
	touch $@

venv: $(TEST_STAMP) $(NODE_STAMP) ## Create .venv with every pinned tool, the tests' included (and their npm packages).

venv-stack: $(STAMP) ## Create .venv with what the stack needs alone (a Docker host that runs no tests, as the Vagrant VM).

# A stage whose inputs are those of the last run that succeeded is skipped;
# FULL=1 runs every stage (after changing something by hand in a container).
up: $(STAMP) ## Bring the dev environment up: ansible-playbook site.yml (FULL=1: no stage skipped).
	$(BIN)/ansible-playbook site.yml $(if $(FULL),-e stage_cache_enabled=false) $(ARGS)

report: $(STAMP) ## Merge a day of shipped logs into the warehouse, refresh the dashboard (DATE=YYYY-MM-DD).
	$(BIN)/ansible-playbook playbooks/report.yml $(if $(DATE),-e sample_app_report_date=$(DATE)) $(ARGS)

down: $(STAMP) ## Remove the dev environment; PURGE=1 also removes its volumes.
	$(BIN)/ansible-playbook playbooks/down.yml -e down_purge=$(if $(PURGE),true,false) $(ARGS)

backup: $(STAMP) ## Back up both databases now, then verify by restoring (TYPE=full for a full one).
	$(BIN)/ansible-playbook playbooks/backup.yml $(if $(TYPE),-e backup_type=$(TYPE)) $(ARGS)

backups: $(STAMP) ## List the backups, their sizes and the restorable time range.
	$(BIN)/ansible-playbook playbooks/backups.yml $(ARGS)

# DB=postgresql|mariadb, AT=latest or a time with its offset, INTO=new for a new container.
restore: $(STAMP) ## Restore DB=postgresql|mariadb to AT='2026-12-01 12:00:00+00' (default latest).
	@[ -n "$(DB)" ] || { echo "make restore: set DB=postgresql or DB=mariadb" >&2; exit 2; }
	$(BIN)/ansible-playbook playbooks/restore.yml -e '{"backup_engines": ["$(DB)"]}' \
	  -e backup_restore_at='$(or $(AT),latest)' -e backup_restore_target=$(if $(INTO),$(INTO),running) $(ARGS)

# Shell scripts: *.sh, and every file whose first line is a sh or bash shebang.
SHELL_SCRIPTS = git ls-files -co --exclude-standard -z | xargs -0 awk \
	'FNR == 1 { if (FILENAME ~ /\.sh$$/ || /^\#!.*[/ ](ba|da)?sh( |$$)/) print FILENAME; nextfile }'

lint: $(TEST_STAMP) ## yamllint, ansible-lint (production profile), ruff, shellcheck.
	$(BIN)/yamllint --strict .
	$(BIN)/ansible-lint --profile production
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@command -v shellcheck >/dev/null || { echo "shellcheck is missing: make test-host installs it (apt-get install shellcheck)" >&2; exit 1; }
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
pytest: $(TEST_STAMP) $(NODE_STAMP) ## Run the pytest suite.
	@rc=0; $(BIN)/pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; fi; \
	exit $$rc

# Two at a time by default (molecule/run.sh says why); MOLECULE_JOBS=1 for one.
MOLECULE_JOBS ?= 2

molecule: $(TEST_STAMP) ## Run every molecule scenario (SCENARIOS="a b" for some, MOLECULE_JOBS=n at a time).
	molecule/run.sh $(MOLECULE_JOBS) $(LOGS) $(SCENARIOS)

test-host: $(STAMP) ## Install what make test needs on this machine (as make up installs the engine).
	$(BIN)/ansible-playbook playbooks/test_host.yml

# Last, so it reads what every run before it wrote: the dev environment (make
# up) and the logs under .shipyard/logs. An explicit path, as the file is no
# test_*.py that a plain pytest run would collect.
scan: $(TEST_STAMP) ## Grep everything the stack wrote for its secrets (needs make up).
	$(BIN)/pytest $(PYTEST_ARGS) tests/secrets/scan_secrets.py

# pytest and the molecule scenarios share the engine and nothing else: each
# has its own containers, networks and names. pytest alone leaves most of the
# second core idle while it waits on containers and servers, so they run side
# by side (molecule/run.sh prints each scenario's log whole, once it ends):
# 39-41 min instead of 56 on a fresh machine. Both run to the end whatever
# the other does; make fails if either failed. The scan reads what both wrote.
test: test-host lint vagrant ## Install what it needs, lint, vagrant validate, pytest and every molecule scenario side by side, the secret scan.
	@$(MAKE) --no-print-directory --keep-going -j2 pytest molecule
	@$(MAKE) --no-print-directory scan

clean: ## Remove .venv and caches (not the dev environment).
	rm -rf $(VENV) .pytest_cache .ruff_cache
