//! The Helm chart, without a cluster: it lints, renders with the runbook's exact
//! flags and with defaults, passes strict schema validation, refuses typos, and
//! carries what the runbook and the security model rely on.

use std::path::PathBuf;
use std::process::Command;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::support::{require_tool, validate_strictly, workspace};

/// The runbook's `helm upgrade --install` flags.
const SEED_FLAGS: &[&str] = &[
    "--set",
    "image.repository=csv-analyst-agent",
    "--set",
    "image.tag=dev",
    "--set",
    "image.pullPolicy=Never",
    "--set",
    "existingSecretName=csv-analyst-llm",
    "--set",
    "env.LLM_PROVIDER=openai",
    "--set",
    "env.SANDBOX_PROVIDER=k8s",
    "--set",
    "env.RUNNER_IMAGE=csv-analyst-runner:dev",
    "--set",
    "env.K8S_NAMESPACE=csv-analyst",
];

struct Helm {
    binary: PathBuf,
    home: tempfile::TempDir,
}

impl Helm {
    fn new() -> Option<Helm> {
        Some(Helm { binary: require_tool("helm")?, home: tempfile::tempdir().unwrap() })
    }

    /// helm with its cache, config and data inside the test's own folder.
    fn run(&self, args: &[&str]) -> (bool, String) {
        let home = self.home.path();
        let output = Command::new(&self.binary)
            .args(args)
            .current_dir(workspace())
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .env("KUBECONFIG", home.join("kubeconfig"))
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        (output.status.success(), text)
    }

    fn template(&self, extra: &[&str]) -> String {
        let mut args = vec!["template", "csv-analyst", "./helm/csv-analyst-chat", "-n", "csv-analyst"];
        args.extend_from_slice(extra);
        let (ok, text) = self.run(&args);
        assert!(ok, "helm template failed:\n{text}");
        text
    }
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .filter_map(|doc| Value::deserialize(doc).ok())
        .filter(|v| v.is_object())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the rendered chart"))
}

#[test]
fn chart_lints_strictly() {
    let Some(helm) = Helm::new() else { return };
    let (ok, text) = helm.run(&["lint", "--strict", "./helm/csv-analyst-chat"]);
    assert!(ok, "{text}");
    let mut args = vec!["lint", "--strict", "./helm/csv-analyst-chat"];
    args.extend_from_slice(SEED_FLAGS);
    let (ok, text) = helm.run(&args);
    assert!(ok, "{text}");
}

#[test]
fn chart_renders_the_runbooks_install_as_it_expects() {
    let Some(helm) = Helm::new() else { return };
    let yaml = helm.template(SEED_FLAGS);
    validate_strictly(&yaml);
    let docs = documents(&yaml);
    let name = "csv-analyst-csv-analyst-chat";

    let deployment = find(&docs, "Deployment", name);
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "csv-analyst-agent:dev");
    assert_eq!(container["imagePullPolicy"], "Never");
    assert_eq!(
        container["ports"],
        json!([
            {"name": "http", "containerPort": 8000, "protocol": "TCP"},
            {"name": "probe", "containerPort": 8001, "protocol": "TCP"},
        ])
    );
    // The probes use their own listener, outside the API port's connection budget.
    assert_eq!(container["livenessProbe"]["httpGet"], json!({"path": "/healthz", "port": "probe"}));
    assert_eq!(container["readinessProbe"]["httpGet"], json!({"path": "/readyz", "port": "probe"}));
    assert_eq!(container["startupProbe"]["httpGet"], json!({"path": "/healthz", "port": "probe"}));
    let env: Vec<&Value> = container["env"].as_array().unwrap().iter().collect();
    let value_of = |key: &str| env.iter().find(|e| e["name"] == key).map(|e| e["value"].clone());
    assert_eq!(value_of("LISTEN_ADDR"), Some(json!("0.0.0.0:8000")));
    assert_eq!(value_of("PROBE_LISTEN_ADDR"), Some(json!("0.0.0.0:8001")));
    // Behind an ingress every client shares its address: no per-address cap.
    assert_eq!(value_of("MAX_CONNECTIONS_PER_ADDRESS"), Some(json!("0")));
    assert_eq!(value_of("SANDBOX_PROVIDER"), Some(json!("k8s")));
    assert_eq!(value_of("RUNNER_IMAGE"), Some(json!("csv-analyst-runner:dev")));
    assert_eq!(value_of("K8S_NAMESPACE"), Some(json!("csv-analyst")));
    assert_eq!(value_of("LLM_PROVIDER"), Some(json!("openai")));
    assert_eq!(env.iter().filter(|e| e["name"] == "K8S_NAMESPACE").count(), 1, "no duplicate env");
    let key = env.iter().find(|e| e["name"] == "OPENAI_API_KEY").unwrap();
    assert_eq!(
        key["valueFrom"]["secretKeyRef"],
        json!({"name": "csv-analyst-llm", "key": "OPENAI_API_KEY", "optional": true})
    );

    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 1000);
    assert_eq!(pod["securityContext"]["runAsGroup"], 1000);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let sc = &container["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(sc["runAsUser"], 1000);

    let service = find(&docs, "Service", name);
    assert_eq!(service["spec"]["ports"][0]["port"], 8000);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
    assert_eq!(service["spec"]["ports"].as_array().unwrap().len(), 1, "the probe port is not part of the Service");

    let role = find(&docs, "Role", name);
    assert_eq!(role["metadata"]["namespace"], "csv-analyst");
    assert_eq!(
        role["rules"],
        json!([
            {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "list", "watch", "delete"]},
            {"apiGroups": ["batch"], "resources": ["jobs/status"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["events"], "verbs": ["list", "watch"]},
            {"apiGroups": [""], "resources": ["namespaces"], "resourceNames": ["csv-analyst"], "verbs": ["get"]},
        ])
    );
    assert!(
        docs.iter().all(|d| d["kind"] != "ClusterRole" && d["kind"] != "ClusterRoleBinding"),
        "nothing cluster-wide"
    );
    let binding = find(&docs, "RoleBinding", name);
    assert_eq!(binding["subjects"][0]["name"], name);

    let runner_policy = find(&docs, "NetworkPolicy", &format!("{name}-runner-deny-all"));
    assert_eq!(
        runner_policy["spec"]["podSelector"]["matchLabels"],
        json!({"app.kubernetes.io/name": "csv-analyst-runner"})
    );
    assert_eq!(runner_policy["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(runner_policy["spec"]["egress"], json!([]));
    let app_policy = find(&docs, "NetworkPolicy", name);
    assert_eq!(
        app_policy["spec"]["ingress"],
        json!([{"ports": [{"port": 8000, "protocol": "TCP"}, {"port": 8001, "protocol": "TCP"}]}])
    );
    let egress_ports: Vec<i64> = app_policy["spec"]["egress"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|rule| rule["ports"].as_array().unwrap().iter().map(|p| p["port"].as_i64().unwrap()))
        .collect();
    assert_eq!(egress_ports, vec![53, 53, 443, 6443, 443], "DNS, the API server and the LLM endpoint only");
    let llm_rule = &app_policy["spec"]["egress"][2];
    assert_eq!(llm_rule["to"], json!([{"ipBlock": {"cidr": "0.0.0.0/0"}}]));
    assert_eq!(value_of("OPENAI_BASE_URL"), None, "the public API unless a base URL is set");

    assert!(docs.iter().all(|d| d["kind"] != "Secret"), "an existing secret is used, none created");
    let runner_account = find(&docs, "ServiceAccount", &format!("{name}-runner"));
    assert_eq!(runner_account["automountServiceAccountToken"], false);
}

#[test]
fn chart_renders_with_defaults_and_creates_its_secret() {
    let Some(helm) = Helm::new() else { return };
    let yaml = helm.template(&[]);
    validate_strictly(&yaml);
    let docs = documents(&yaml);
    let secret = find(&docs, "Secret", "csv-analyst-csv-analyst-chat");
    assert!(secret.get("stringData").is_none(), "no keys, no data");
    let yaml = helm.template(&[
        "--set",
        "secret.openaiApiKey=sk-test",
        "--set",
        "ingress.enabled=true",
        "--set",
        "persistence.enabled=false",
    ]);
    validate_strictly(&yaml);
    let docs = documents(&yaml);
    assert_eq!(
        find(&docs, "Secret", "csv-analyst-csv-analyst-chat")["stringData"],
        json!({"OPENAI_API_KEY": "sk-test"})
    );
    let ingress = find(&docs, "Ingress", "csv-analyst-csv-analyst-chat");
    assert_eq!(
        ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-buffering"], "off",
        "server-sent events pass unbuffered"
    );
    assert!(docs.iter().all(|d| d["kind"] != "PersistentVolumeClaim"));

    // A local OpenAI-compatible server, reachable only on its own range and port.
    let yaml = helm.template(&[
        "--set",
        "llm.openaiBaseUrl=http://vllm.models.svc:8000/v1",
        "--set",
        "networkPolicy.llm.cidrs[0]=10.20.0.0/16",
        "--set",
        "networkPolicy.llm.ports[0]=8000",
        "--set",
        "ingress.enabled=true",
        "--set",
        "ingress.annotations.team=data",
        "--set",
        "probes.port=9090",
    ]);
    validate_strictly(&yaml);
    let docs = documents(&yaml);
    let deployment = find(&docs, "Deployment", "csv-analyst-csv-analyst-chat");
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"].as_array().unwrap().clone();
    let base = env.iter().find(|e| e["name"] == "OPENAI_BASE_URL").unwrap();
    assert_eq!(base["value"], "http://vllm.models.svc:8000/v1");
    let probe = env.iter().find(|e| e["name"] == "PROBE_LISTEN_ADDR").unwrap();
    assert_eq!(probe["value"], "0.0.0.0:9090");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["ports"][1], json!({"name": "probe", "containerPort": 9090, "protocol": "TCP"}));
    let policy = find(&docs, "NetworkPolicy", "csv-analyst-csv-analyst-chat");
    assert_eq!(
        policy["spec"]["egress"][2],
        json!({"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "ports": [{"port": 8000, "protocol": "TCP"}]})
    );
    assert_eq!(policy["spec"]["ingress"][0]["ports"][1], json!({"port": 9090, "protocol": "TCP"}));
    let runner_policy = find(&docs, "NetworkPolicy", "csv-analyst-csv-analyst-chat-runner-deny-all");
    assert_eq!(runner_policy["spec"]["egress"], json!([]), "runner pods stay deny-all");
    let annotations = &find(&docs, "Ingress", "csv-analyst-csv-analyst-chat")["metadata"]["annotations"];
    assert_eq!(annotations["team"], "data");
    assert_eq!(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"], "3600");
}

#[test]
fn chart_refuses_values_it_does_not_know() {
    let Some(helm) = Helm::new() else { return };
    for bad in [
        "imagee.tag=dev",
        "image.pullPolicy=Sometimes",
        "env.SANDBOX_PROVIDER=docker",
        "env.OPENAI_API_KEY=sk-x",
        "env.PROBE_LISTEN_ADDR=0.0.0.0:9000",
        "probes.port=8000",
        "replicaCount=3",
    ] {
        let (ok, text) = helm.run(&["template", "x", "./helm/csv-analyst-chat", "--set", bad]);
        assert!(!ok, "--set {bad} rendered:\n{text}");
        assert!(text.contains("schema"), "{bad}: {text}");
    }
}
