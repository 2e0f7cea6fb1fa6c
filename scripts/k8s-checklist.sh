#!/usr/bin/env bash
# The runbook's agent checklist (docs/runbook.md, "The agent checklist"), run against
# the cluster kubectl points at, where csv-analyst is installed: every row checked,
# and the first that does not hold stops it with the reason. `make k8s-e2e` runs it
# after deploying to kind; `make k8s-checklist` runs it against any cluster (k3s).
#
# Settings (the Makefile passes its own): NAMESPACE, RELEASE, FULLNAME, RUNNER_IMAGE,
# SMOKE_PORT, KUBECTL. CSV_ANALYST_TOKEN: a bearer token for POST /runs, for an
# install that refuses callers without one (the chart's auth.anonymous=deny). Needs
# kubectl and curl; no jq.

set -euo pipefail

NAMESPACE=${NAMESPACE:-csv-analyst}
RELEASE=${RELEASE:-csv-analyst}
FULLNAME=${FULLNAME:-$RELEASE-csv-analyst-chat}
RUNNER_IMAGE=${RUNNER_IMAGE:-csv-analyst-runner:dev}
SMOKE_PORT=${SMOKE_PORT:-18000}
KUBECTL=${KUBECTL:-kubectl}
SERVICE_ACCOUNT="system:serviceaccount:$NAMESPACE:$FULLNAME"
URL="http://127.0.0.1:$SMOKE_PORT"
SEED='{"dataset_id":"support","query_type":"sql","sql":"SELECT COUNT(*) AS ticket_count FROM tickets"}'
AUTH=()
[ -z "${CSV_ANALYST_TOKEN:-}" ] || AUTH=(-H "Authorization: Bearer $CSV_ANALYST_TOKEN")

checked=0
fail() {
  echo "k8s-checklist: FAILED: $*" >&2
  exit 1
}
ok() {
  checked=$((checked + 1))
  echo "k8s-checklist: ok: $*"
}
kc() { $KUBECTL "$@"; }
# The value of one metric line of /metrics (0 when absent).
metric() {
  curl -fsS "$URL/metrics" | grep -F "$1 " | awk '{print $NF}' | head -n 1 | grep . || echo 0
}

for tool in curl awk grep sed; do
  command -v "$tool" >/dev/null || fail "$tool is not installed"
done
command -v "${KUBECTL%% *}" >/dev/null || fail "kubectl ($KUBECTL) is not installed"

# 0. A cluster, reachable.
if ! reach=$(kc version --request-timeout=10s 2>&1); then
  context=$(kc config current-context 2>/dev/null || echo "<none>")
  fail "no Kubernetes cluster is reachable (kubectl context $context): $(echo "$reach" | tail -n 1). \
Start one (make k8s-up for kind) or point KUBECONFIG at one."
fi
ok "the cluster answers (kubectl context $(kc config current-context))"
kc get namespace "$NAMESPACE" >/dev/null 2>&1 || fail "namespace $NAMESPACE does not exist: install first (make helm-install)"

# 1. The orchestrator pod Running, 1/1 ready.
kc -n "$NAMESPACE" rollout status "deploy/$FULLNAME" --timeout=180s >/dev/null ||
  fail "deploy/$FULLNAME did not become ready: kubectl -n $NAMESPACE describe deploy/$FULLNAME"
ready=$(kc -n "$NAMESPACE" get deploy "$FULLNAME" -o jsonpath='{.status.readyReplicas}/{.status.replicas}')
[ "$ready" = "1/1" ] || fail "deploy/$FULLNAME is $ready ready, expected 1/1"
ok "the orchestrator pod is Running, $ready ready"

# The service, through a port-forward.
forward_log=$(mktemp)
kc -n "$NAMESPACE" port-forward "svc/$FULLNAME" "$SMOKE_PORT:8000" >"$forward_log" 2>&1 &
forward=$!
trap 'kill $forward 2>/dev/null || true; rm -f "$forward_log"' EXIT
for _ in $(seq 1 100); do
  curl -fsS "$URL/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "$URL/healthz" >/dev/null 2>&1 || fail "no answer through the port-forward: $(cat "$forward_log")"

# 2. /readyz, in words.
readyz=$(curl -sS "$URL/readyz")
echo "$readyz" | grep -qF '"status":"ready"' || fail "/readyz is not ready: $readyz"
for words in "Kubernetes API reachable (v" \
  "namespace $NAMESPACE exists, the service account may create, watch and delete Jobs, watch pods and events, and read pod logs there" \
  "runner image $RUNNER_IMAGE"; do
  echo "$readyz" | grep -qF "$words" || fail "/readyz does not say \"$words\": $readyz"
done
ok "/readyz: $(echo "$readyz" | sed -n 's/.*"sandbox":"\([^"]*\)".*/\1/p')"

succeeded_metric='csv_analyst_runs_total{status="succeeded",provider="k8s"}'
succeeded_before=$(metric "$succeeded_metric")

# 3. The seed query: succeeded, [[6000]], a Job.
response=$(curl -fsS -X POST "$URL/runs" ${AUTH[@]+"${AUTH[@]}"} -H 'Content-Type: application/json' --data-binary "$SEED")
echo "$response" | grep -qF '"status":"succeeded"' || fail "the seed query did not succeed: $response"
echo "$response" | grep -qF '"rows":[[6000]]' || fail "the seed query did not return [[6000]]: $response"
job=$(echo "$response" | sed -n 's/.*"job_name":"\([^"]*\)".*/\1/p')
[ -n "$job" ] || fail "the seed query's details.job_name is not set: $response"
ok "POST /runs (seed query): succeeded, rows [[6000]], job $job"

# 4. Its Job: Complete, 1/1, listed by the runner label.
kc -n "$NAMESPACE" wait --for=condition=complete "job/$job" --timeout=60s >/dev/null ||
  fail "job/$job is not Complete: kubectl -n $NAMESPACE describe job/$job"
completions=$(kc -n "$NAMESPACE" get job "$job" -o jsonpath='{.status.succeeded}/{.spec.completions}')
[ "$completions" = "1/1" ] || fail "job/$job completions $completions, expected 1/1"
kc -n "$NAMESPACE" get jobs -l app.kubernetes.io/name=csv-analyst-runner -o name | grep -qx "job.batch/$job" ||
  fail "job/$job is not listed by -l app.kubernetes.io/name=csv-analyst-runner"
ok "job/$job is Complete, 1/1, labelled app.kubernetes.io/name=csv-analyst-runner"

# 5. Its spec: locked down.
spec() { kc -n "$NAMESPACE" get job "$job" -o jsonpath="$1"; }
[ "$(spec '{.spec.backoffLimit}')" = 0 ] || fail "job/$job backoffLimit is not 0"
[ -n "$(spec '{.spec.activeDeadlineSeconds}')" ] || fail "job/$job has no activeDeadlineSeconds"
[ "$(spec '{.spec.template.spec.securityContext.runAsNonRoot}')" = true ] || fail "job/$job does not runAsNonRoot"
[ "$(spec '{.spec.template.spec.automountServiceAccountToken}')" = false ] || fail "job/$job mounts a token"
[ "$(spec '{.spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem}')" = true ] ||
  fail "job/$job's root filesystem is writable"
[ "$(spec '{.spec.template.spec.containers[0].securityContext.capabilities.drop}')" = '["ALL"]' ] ||
  fail "job/$job does not drop ALL capabilities"
ok "job/$job: backoffLimit 0, activeDeadlineSeconds, runAsNonRoot, readOnlyRootFilesystem, drop [ALL], no token"

# 6. /metrics counts k8s runs.
succeeded_after=$(metric "$succeeded_metric")
[ "$succeeded_after" -gt "$succeeded_before" ] 2>/dev/null ||
  fail "/metrics $succeeded_metric went from $succeeded_before to $succeeded_after"
pod_starts=$(metric 'csv_analyst_k8s_pod_start_seconds_count')
[ "${pod_starts%.*}" -ge 1 ] 2>/dev/null || fail "/metrics csv_analyst_k8s_pod_start_seconds_count is $pod_starts"
ok "/metrics: $succeeded_metric $succeeded_before → $succeeded_after, k8s pod starts $pod_starts"

# 7. DROP: rejected, and no Job created.
jobs_before=$(kc -n "$NAMESPACE" get jobs -o name | sort)
response=$(curl -sS -X POST "$URL/runs" ${AUTH[@]+"${AUTH[@]}"} -H 'Content-Type: application/json' \
  --data-binary '{"dataset_id":"support","query_type":"sql","sql":"DROP TABLE tickets"}')
echo "$response" | grep -qF '"status":"rejected"' || fail "DROP TABLE was not rejected: $response"
echo "$response" | grep -qF 'SQL_NOT_ALLOWED' || fail "DROP TABLE was not SQL_NOT_ALLOWED: $response"
run_id=$(echo "$response" | sed -n 's/.*"run_id":"\([^"]*\)".*/\1/p')
sleep 2
jobs_after=$(kc -n "$NAMESPACE" get jobs -o name | sort)
[ "$jobs_before" = "$jobs_after" ] || fail "a Job appeared after the rejected DROP: $(comm -13 <(echo "$jobs_before") <(echo "$jobs_after"))"
[ -z "$(kc -n "$NAMESPACE" get jobs -l "csv-analyst.io/run-id=$run_id" -o name)" ] || fail "run $run_id has a Job"
ok "DROP TABLE: rejected (SQL_NOT_ALLOWED), no Job created"

# 8. RBAC: what the orchestrator's account may do, and may not.
can() { kc auth can-i "$@" --as "$SERVICE_ACCOUNT" 2>/dev/null || true; }
for allowed in "create jobs.batch -n $NAMESPACE" "delete jobs.batch -n $NAMESPACE" "watch jobs.batch -n $NAMESPACE" \
  "watch pods -n $NAMESPACE" "get pods --subresource=log -n $NAMESPACE" "watch events -n $NAMESPACE" \
  "get namespaces/$NAMESPACE -n $NAMESPACE"; do
  # shellcheck disable=SC2086
  [ "$(can $allowed)" = yes ] || fail "kubectl auth can-i $allowed --as $SERVICE_ACCOUNT: not yes"
done
for refused in "create pods -n $NAMESPACE" "get secrets -n $NAMESPACE" "create jobs.batch -n kube-system" \
  "list nodes" "create clusterroles.rbac.authorization.k8s.io" "delete namespaces/$NAMESPACE"; do
  # shellcheck disable=SC2086
  [ "$(can $refused)" = no ] || fail "kubectl auth can-i $refused --as $SERVICE_ACCOUNT: not no"
done
ok "kubectl auth can-i --as $SERVICE_ACCOUNT: yes for Jobs, pods, logs, events in $NAMESPACE; no for pods, secrets, other namespaces, cluster-wide"

# 9. The NetworkPolicies.
policy() { kc -n "$NAMESPACE" get networkpolicy "$FULLNAME-runner-deny-all" -o jsonpath="$1"; }
selector=$(policy '{.spec.podSelector.matchLabels.app\.kubernetes\.io/name} {.spec.policyTypes}' 2>/dev/null) ||
  fail "no NetworkPolicy $FULLNAME-runner-deny-all in $NAMESPACE"
[ "$selector" = 'csv-analyst-runner ["Ingress","Egress"]' ] ||
  fail "NetworkPolicy $FULLNAME-runner-deny-all does not select runner pods for Ingress and Egress: $selector"
for rules in '{.spec.ingress}' '{.spec.egress}'; do
  case "$(policy "$rules")" in
    '' | '[]') ;;
    *) fail "NetworkPolicy $FULLNAME-runner-deny-all allows traffic: $rules is $(policy "$rules")" ;;
  esac
done
kc -n "$NAMESPACE" get networkpolicy "$FULLNAME" >/dev/null 2>&1 || fail "no NetworkPolicy $FULLNAME (the service's own)"
ok "NetworkPolicy $FULLNAME-runner-deny-all (runner pods: no traffic) and $FULLNAME"

# 10. render-job: the exact Job a run creates, accepted by this API server.
rendered=$(kc -n "$NAMESPACE" exec "deploy/$FULLNAME" -- /usr/local/bin/orchestrator render-job \
  --dataset support --sql "SELECT 1") || fail "orchestrator render-job failed in deploy/$FULLNAME"
echo "$rendered" | grep -qF "namespace: $NAMESPACE" || fail "render-job did not default to namespace $NAMESPACE"
echo "$rendered" | kc apply --dry-run=server -f - >/dev/null || fail "the API server refuses the Job render-job prints"
ok "orchestrator render-job: a Job for namespace $NAMESPACE, accepted by kubectl apply --dry-run=server"

echo "k8s-checklist: all $checked checks passed on $(kc config current-context), namespace $NAMESPACE"
