# csv-analyst: the operator runbook's targets (docs/runbook.md).
#
#   make deploy-all-local      kind cluster, both images, helm install, smoke test
#   make k8s-smoke             /healthz, POST /runs and a completed Job, through a port-forward
#   make k8s-e2e               the whole runbook against a real kind cluster (not run in CI)
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

.PHONY: help static-runner-host static-orchestrator guest-cwasm runner-rootfs agent-rootfs build-runner-k8s build-agent-k8s \
	k8s-up k8s-down kind-load helm-lint helm-install k8s-smoke deploy-all-local k8s-e2e

help:
	@sed -n 's/^#   //p' $(MAKEFILE_LIST)
	@echo "targets: build-runner-k8s build-agent-k8s k8s-up k8s-down kind-load helm-lint helm-install k8s-smoke deploy-all-local k8s-e2e"

## Binaries ---------------------------------------------------------------------

# runner-host and orchestrator as static executables, without the embedded guest (the
# runner image ships it precompiled; the agent runs queries in runner Jobs).
STATIC_BUILD := CARGO_TARGET_DIR=$(STATIC_DIR) RUSTFLAGS="-C target-feature=+crt-static" \
	$(CARGO) build --release --target $(STATIC_TARGET) --no-default-features

static-runner-host:
	$(STATIC_BUILD) -p runner-host

static-orchestrator:
	$(STATIC_BUILD) -p orchestrator

# The guest compiled ahead of time for $(GUEST_CPU), so a runner starts in milliseconds.
guest-cwasm:
	CARGO_TARGET_DIR=$(TARGET_DIR) $(CARGO) build --release -p runner-host
	mkdir -p $(DIST)
	$(TARGET_DIR)/release/runner-host precompile --cpu $(GUEST_CPU) --out $(DIST)/guest.cwasm

# The runner image's files: /usr/local/bin/runner-host, /opt/csv-analyst/guest.cwasm, /data.
runner-rootfs: static-runner-host guest-cwasm
	rm -rf $(DIST)/runner
	mkdir -p $(DIST)/runner/usr/local/bin $(DIST)/runner/opt/csv-analyst $(DIST)/runner/data
	cp $(STATIC_BIN)/runner-host $(DIST)/runner/usr/local/bin/
	cp $(DIST)/guest.cwasm $(DIST)/runner/opt/csv-analyst/
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

# The runbook end to end on a real kind cluster (needs Docker, kind, kubectl, helm).
# Not run in CI: no Kubernetes API server can run there.
k8s-e2e: helm-lint deploy-all-local
	$(KUBECTL) -n $(NAMESPACE) get deploy,svc,role,rolebinding,networkpolicy,jobs
	@echo "k8s-e2e: the runbook passed on kind cluster $(KIND_CLUSTER)"
