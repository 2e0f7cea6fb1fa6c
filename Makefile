# csv-analyst: the operator runbook's targets (docs/runbook.md).
#
#   make deploy-all-local      kind cluster, both images, helm install, smoke test
#   make k8s-smoke             /healthz, POST /runs and a completed Job, through a port-forward
#   make k8s-e2e               the whole runbook against a real kind cluster (not run in CI)
#   make k8s-checklist         the runbook's agent checklist against the cluster kubectl points at
#   make lint                  rustfmt, and clippy for every crate: host, bench, the wasm guest
#
# Images are built from binaries compiled on this machine (static, no base image to
# pull). Settings: K8S_IMAGE_TAG, K8S_IMAGE_REPOSITORY (the agent image's repository,
# as helm's image.repository), K8S_RUNNER_IMAGE_REPOSITORY, OPENAI_API_KEY (optional).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

K8S_IMAGE_TAG ?= dev
K8S_IMAGE_REPOSITORY ?= csv-analyst-agent
K8S_RUNNER_IMAGE_REPOSITORY ?= csv-analyst-runner
AGENT_IMAGE := $(K8S_IMAGE_REPOSITORY):$(K8S_IMAGE_TAG)
RUNNER_IMAGE := $(K8S_RUNNER_IMAGE_REPOSITORY):$(K8S_IMAGE_TAG)

KIND_CLUSTER ?= csv-analyst
NAMESPACE ?= csv-analyst
RELEASE ?= csv-analyst
CHART := ./helm/csv-analyst-chat
FULLNAME := $(RELEASE)-csv-analyst-chat
LLM_SECRET ?= csv-analyst-llm
LLM_PROVIDER ?= openai
SMOKE_PORT ?= 18000

DOCKER ?= docker
KIND ?= kind
KUBECTL ?= kubectl
HELM ?= helm
CARGO ?= cargo

# Where cargo builds (honours CARGO_TARGET_DIR) and where the images' root
# filesystems are assembled.
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
DIST ?= $(TARGET_DIR)/dist
STATIC_TARGET := x86_64-unknown-linux-gnu
STATIC_DIR := $(TARGET_DIR)/static
STATIC_BIN := $(STATIC_DIR)/$(STATIC_TARGET)/release
# The CPUs the precompiled guest must run on (native, x86-64-v2, x86-64-v3).
GUEST_CPU ?= x86-64-v2

.PHONY: help lint fuzz static-runner-host static-orchestrator guest-wasm guest-cwasm runner-rootfs agent-rootfs build-runner-k8s build-agent-k8s \
	k8s-up k8s-down kind-load helm-lint helm-install k8s-smoke deploy-all-local k8s-e2e k8s-preflight k8s-checklist

help:
	@sed -n 's/^#   //p' $(MAKEFILE_LIST)
	@echo "targets: lint fuzz build-runner-k8s build-agent-k8s k8s-up k8s-down kind-load helm-lint helm-install k8s-smoke deploy-all-local k8s-e2e"

## Lints ------------------------------------------------------------------------

# Everything .ci/run checks (fmt, clippy for the host crates), plus what it leaves out
# for time: clippy for `bench`, which checks DataFusion natively (about 4 minutes more
# cold, in the same invocation so the host crates' dependencies are checked once), and
# for the guest, which checks DataFusion for wasm32 in the guest's own target directory
# with the profile runner-host/build.rs builds it with.
lint:
	$(CARGO) fmt --all -- --check
	CARGO_TARGET_DIR=$(TARGET_DIR) $(CARGO) clippy --release --all-targets -p protocol -p runner-host \
	  -p orchestrator -p tests -p dataset-generator -p csv-decoder -p sql-bounds -p bench -- -D warnings
	$(CARGO) clippy -p runner-guest --target wasm32-wasip1 --profile guest \
	  --target-dir $(TARGET_DIR)/guest -- -D warnings

## Fuzzing ----------------------------------------------------------------------

# The CSV decoder's property tests at FUZZ_CASES cases each (the test suite runs 256):
# the fast reader against arrow-csv on arbitrary bytes and on files the csv crate
# writes. About a minute per 20 000 cases on two cores. A failure prints the input.
FUZZ_CASES ?= 100000

fuzz:
	PROPTEST_CASES=$(FUZZ_CASES) CARGO_TARGET_DIR=$(TARGET_DIR) $(CARGO) test --release -p csv-decoder \
	  --test differential -- arbitrary_bytes written_files

## Binaries ---------------------------------------------------------------------

# runner-host and orchestrator as static executables, without the embedded guest (the
# runner image ships it precompiled; the agent runs queries in runner Jobs).
STATIC_BUILD := CARGO_TARGET_DIR=$(STATIC_DIR) RUSTFLAGS="-C target-feature=+crt-static" \
	$(CARGO) build --release --target $(STATIC_TARGET) --no-default-features

static-runner-host:
	$(STATIC_BUILD) -p runner-host

static-orchestrator:
	$(STATIC_BUILD) -p orchestrator

# The guest module, built exactly as runner-host/build.rs builds it (same command,
# profile, target directory and environment: the host's flags and wrappers dropped), so
# after any host build or test run this is a no-op, not half an hour of DataFusion.
GUEST_WASM := $(TARGET_DIR)/guest/wasm32-wasip1/guest/runner-guest.wasm

guest-wasm:
	env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS -u RUSTC_WRAPPER -u RUSTC_WORKSPACE_WRAPPER \
	  $(CARGO) build --package runner-guest --target wasm32-wasip1 --profile guest --target-dir $(TARGET_DIR)/guest

# The guest compiled ahead of time for $(GUEST_CPU), so a runner starts in milliseconds.
# Compiled by the static runner-host the image ships (no second host build of
# runner-host with the embedded guest), and only when the guest or that runner-host is
# newer than the artifact (a full Cranelift compile takes a minute or more).
GUEST_CWASM := $(DIST)/guest-$(GUEST_CPU).cwasm

guest-cwasm: static-runner-host guest-wasm
	mkdir -p $(DIST)
	if [ $(GUEST_CWASM) -nt $(GUEST_WASM) ] && [ $(GUEST_CWASM) -nt $(STATIC_BIN)/runner-host ]; then \
	  echo "$(GUEST_CWASM) is up to date"; \
	else \
	  $(STATIC_BIN)/runner-host precompile --module $(GUEST_WASM) --cpu $(GUEST_CPU) --out $(GUEST_CWASM).tmp \
	    && mv $(GUEST_CWASM).tmp $(GUEST_CWASM); \
	fi

# The runner image's files: /usr/local/bin/runner-host, /opt/csv-analyst/guest.cwasm, /data.
runner-rootfs: static-runner-host guest-cwasm
	rm -rf $(DIST)/runner
	mkdir -p $(DIST)/runner/usr/local/bin $(DIST)/runner/opt/csv-analyst $(DIST)/runner/data
	cp $(STATIC_BIN)/runner-host $(DIST)/runner/usr/local/bin/
	cp $(GUEST_CWASM) $(DIST)/runner/opt/csv-analyst/guest.cwasm
	tar -C datasets --exclude=generator -cf - . | tar -C $(DIST)/runner/data -xf -

# The agent image's files: /usr/local/bin/orchestrator, /app/datasets, /var/lib/csv-analyst.
agent-rootfs: static-orchestrator
	rm -rf $(DIST)/agent
	mkdir -p $(DIST)/agent/usr/local/bin $(DIST)/agent/app/datasets $(DIST)/agent/var/lib/csv-analyst $(DIST)/agent/tmp
	cp $(STATIC_BIN)/orchestrator $(DIST)/agent/usr/local/bin/
	tar -C datasets --exclude=generator -cf - . | tar -C $(DIST)/agent/app/datasets -xf -

## Images -----------------------------------------------------------------------

build-runner-k8s: runner-rootfs
	$(DOCKER) build -f Dockerfile.runner --target packaged -t $(RUNNER_IMAGE) $(DIST)/runner

build-agent-k8s: agent-rootfs
	$(DOCKER) build -f Dockerfile.k8s --target packaged -t $(AGENT_IMAGE) $(DIST)/agent

## Cluster ----------------------------------------------------------------------

k8s-up:
	$(KIND) get clusters | grep -qx $(KIND_CLUSTER) || $(KIND) create cluster --name $(KIND_CLUSTER)

k8s-down:
	$(KIND) delete cluster --name $(KIND_CLUSTER)

kind-load:
	$(KIND) load docker-image $(RUNNER_IMAGE) --name $(KIND_CLUSTER)
	$(KIND) load docker-image $(AGENT_IMAGE) --name $(KIND_CLUSTER)

helm-lint:
	$(HELM) lint --strict $(CHART)
	$(HELM) lint --strict $(CHART) --set image.repository=$(K8S_IMAGE_REPOSITORY) --set image.tag=$(K8S_IMAGE_TAG) \
	  --set existingSecretName=$(LLM_SECRET) --set env.LLM_PROVIDER=$(LLM_PROVIDER) --set env.SANDBOX_PROVIDER=k8s \
	  --set env.RUNNER_IMAGE=$(RUNNER_IMAGE) --set env.K8S_NAMESPACE=$(NAMESPACE)

# The runbook's install: namespace, the LLM secret (the key is optional), the chart.
helm-install:
	$(KUBECTL) create namespace $(NAMESPACE) --dry-run=client -o yaml | $(KUBECTL) apply -f -
	$(KUBECTL) -n $(NAMESPACE) create secret generic $(LLM_SECRET) \
	  $${OPENAI_API_KEY:+--from-literal=OPENAI_API_KEY=$$OPENAI_API_KEY} \
	  $${ANTHROPIC_API_KEY:+--from-literal=ANTHROPIC_API_KEY=$$ANTHROPIC_API_KEY} \
	  --dry-run=client -o yaml | $(KUBECTL) apply -f -
	$(HELM) upgrade --install $(RELEASE) $(CHART) -n $(NAMESPACE) \
	  --set image.repository=$(K8S_IMAGE_REPOSITORY) --set image.tag=$(K8S_IMAGE_TAG) --set image.pullPolicy=Never \
	  --set existingSecretName=$(LLM_SECRET) --set env.LLM_PROVIDER=$(LLM_PROVIDER) --set env.SANDBOX_PROVIDER=k8s \
	  --set env.RUNNER_IMAGE=$(RUNNER_IMAGE) --set env.K8S_NAMESPACE=$(NAMESPACE)
	$(KUBECTL) -n $(NAMESPACE) rollout status deploy/$(FULLNAME) --timeout=240s

# /healthz and the seed query through a port-forward, then the run's Job, completed.
k8s-smoke:
	$(KUBECTL) -n $(NAMESPACE) port-forward svc/$(FULLNAME) $(SMOKE_PORT):8000 >/tmp/csv-analyst-port-forward.log 2>&1 & \
	pf=$$!; trap 'kill $$pf 2>/dev/null || true' EXIT; \
	for _ in $$(seq 1 100); do curl -fsS http://127.0.0.1:$(SMOKE_PORT)/healthz >/dev/null 2>&1 && break; sleep 0.2; done; \
	echo "GET /healthz: $$(curl -fsS http://127.0.0.1:$(SMOKE_PORT)/healthz)"; \
	response=$$(curl -fsS -X POST http://127.0.0.1:$(SMOKE_PORT)/runs -H 'Content-Type: application/json' \
	  --data-binary '{"dataset_id":"support","query_type":"sql","sql":"SELECT COUNT(*) AS ticket_count FROM tickets"}'); \
	echo "POST /runs: $$response"; \
	echo "$$response" | grep -q '"status":"succeeded"' || { echo "k8s-smoke: the run did not succeed"; exit 1; }; \
	job=$$(echo "$$response" | sed -n 's/.*"job_name":"\([^"]*\)".*/\1/p'); \
	$(KUBECTL) -n $(NAMESPACE) wait --for=condition=complete job/$$job --timeout=60s; \
	$(KUBECTL) -n $(NAMESPACE) get jobs -l app.kubernetes.io/name=csv-analyst-runner; \
	echo "k8s-smoke: ok (job $$job completed)"

deploy-all-local: k8s-up build-runner-k8s build-agent-k8s kind-load helm-install k8s-smoke

# The runbook end to end on a real kind cluster: the tools checked first (each missing
# one named), the chart linted, the cluster up and made kubectl's current context, the
# install and smoke test (deploy-all-local), then every row of the runbook's agent
# checklist (k8s-checklist). Not run in CI: no Kubernetes API server can run there.
k8s-e2e: k8s-preflight helm-lint k8s-up
	$(KIND) export kubeconfig --name $(KIND_CLUSTER)
	$(MAKE) deploy-all-local
	$(MAKE) k8s-checklist
	@echo "k8s-e2e: the runbook passed on kind cluster $(KIND_CLUSTER)"

k8s-preflight:
	@for tool in $(DOCKER) $(KIND) $(KUBECTL) $(HELM) curl; do \
	  command -v $$tool >/dev/null || { echo "k8s-e2e: $$tool is not installed (docs/runbook.md, Prerequisites)" >&2; exit 1; }; \
	done
	@$(DOCKER) info >/dev/null 2>&1 || { echo "k8s-e2e: the Docker daemon does not answer ($(DOCKER) info failed); kind runs the cluster in it" >&2; exit 1; }

# The runbook's agent checklist (scripts/k8s-checklist.sh) against the cluster kubectl
# points at, where the chart is installed: kind, or the k3s server of the runbook.
# It fails at once, saying so, when no cluster is reachable.
k8s-checklist:
	NAMESPACE=$(NAMESPACE) RELEASE=$(RELEASE) FULLNAME=$(FULLNAME) RUNNER_IMAGE=$(RUNNER_IMAGE) \
	  SMOKE_PORT=$(SMOKE_PORT) KUBECTL="$(KUBECTL)" scripts/k8s-checklist.sh
