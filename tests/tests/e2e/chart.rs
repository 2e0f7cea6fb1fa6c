//! The Helm chart, without a cluster: it lints, renders with the runbook's exact
//! flags and with defaults, passes strict schema validation, refuses typos, and
//! carries what the runbook and the security model rely on.

use std::path::PathBuf;
use std::process::Command;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::support::{require_tool, validate_strictly, validation_report, workspace};

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
        "auth.allowUnauthenticatedIngress=true",
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
    // A single-user service answers its ingress's name (and refuses others: DNS rebinding).
    let env = container_env(&docs);
    let allowed = env.iter().find(|e| e["name"] == "ALLOWED_HOSTS").expect("ALLOWED_HOSTS with an ingress");
    assert_eq!(allowed["value"], "csv-analyst.local");

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
        "auth.adminToken.existingSecret=csv-analyst-admin",
        "--set",
        "auth.anonymous=deny",
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
        "replicaCount=-1",
        "store.postgress.url=postgres://db/csv",
        "store.postgres.url=mysql://db/csv",
        "store.leaseSeconds=2",
        "env.RUN_STORE_URL=postgres://db/csv",
        "env.RUN_STORE_URL_FILE=/tmp/url",
        "env.RUN_LEASE_SECONDS=45",
        "metrics.serviceMonitor.interval=often",
        "metrics.serviceMonitr.enabled=true",
    ] {
        let (ok, text) = helm.run(&["template", "x", "./helm/csv-analyst-chat", "--set", bad]);
        assert!(!ok, "--set {bad} rendered:\n{text}");
        assert!(text.contains("schema"), "{bad}: {text}");
    }
}

/// The orchestrator container's env entries in a rendered chart.
fn container_env(docs: &[Value]) -> Vec<Value> {
    let deployment = find(docs, "Deployment", "csv-analyst-csv-analyst-chat");
    deployment["spec"]["template"]["spec"]["containers"][0]["env"].as_array().unwrap().clone()
}

/// The pod's volume of Secret `secret`.
fn secret_volume<'a>(pod: &'a Value, secret: &str) -> &'a Value {
    let volumes = pod["volumes"].as_array().expect("the pod has volumes");
    volumes
        .iter()
        .find(|v| v["secret"]["secretName"] == secret)
        .unwrap_or_else(|| panic!("no volume of Secret {secret}"))
}

/// Where the orchestrator container mounts `volume`.
fn mount_of<'a>(pod: &'a Value, volume: &Value) -> &'a Value {
    let mounts = pod["containers"][0]["volumeMounts"].as_array().expect("the container mounts volumes");
    mounts
        .iter()
        .find(|m| m["name"] == volume["name"])
        .unwrap_or_else(|| panic!("volume {} is not mounted", volume["name"]))
}

fn env_value(env: &[Value], key: &str) -> Option<Value> {
    env.iter().find(|e| e["name"] == key).map(|e| e["value"].clone())
}

#[test]
fn chart_mounts_the_admin_token_as_a_file_and_renders_the_auth_settings() {
    let Some(helm) = Helm::new() else { return };
    // Defaults: auth off, nothing mounted, only the anonymous mode rendered.
    let docs = documents(&helm.template(&[]));
    let env = container_env(&docs);
    assert_eq!(env_value(&env, "AUTH_ANONYMOUS"), Some(json!("run")));
    for unset in ["ADMIN_TOKEN", "ADMIN_TOKEN_FILE", "AUTH_ANONYMOUS_DATASETS", "OIDC_ISSUER", "OIDC_AUDIENCE"] {
        assert!(env.iter().all(|e| e["name"] != unset), "{unset} rendered with auth off");
    }
    for unset in ["OIDC_DATASETS_CLAIM", "OIDC_ADMIN_CLAIM", "TRUSTED_PROXIES", "TRUSTED_PROXY_HEADER"] {
        assert!(env.iter().all(|e| e["name"] != unset), "{unset} rendered with auth off");
    }
    let pod = &find(&docs, "Deployment", "csv-analyst-csv-analyst-chat")["spec"]["template"]["spec"];
    assert!(pod["volumes"].as_array().unwrap().iter().all(|v| v.get("secret").is_none()), "no Secret mounted");

    let yaml = helm.template(&[
        "--set",
        "auth.adminToken.existingSecret=s",
        "--set",
        "auth.anonymous=deny",
        "--set",
        "auth.anonymousDatasets={support,sensors}",
        "--set",
        "auth.oidc.issuer=https://id.example.com/realms/data",
        "--set",
        "auth.oidc.audience=csv-analyst",
        "--set",
        "auth.oidc.datasetsClaim=datasets",
        "--set",
        "auth.oidc.adminClaim=groups",
        "--set",
        "auth.oidc.adminValue=csv-admins",
        "--set",
        "auth.trustedProxies={10.42.0.0/16,fd00::/8}",
        "--set",
        "auth.trustedProxyHeader=X-Forwarded-User",
        "--set",
        "auth.trustedProxyDatasets={support}",
    ]);
    validate_strictly(&yaml);
    let docs = documents(&yaml);
    let env = container_env(&docs);
    // The admin token is a file from Secret s, read-only; never an env value or secretKeyRef.
    let pod = &find(&docs, "Deployment", "csv-analyst-csv-analyst-chat")["spec"]["template"]["spec"];
    let volume = secret_volume(pod, "s");
    assert_eq!(volume["secret"]["items"], json!([{"key": "admin-token", "path": "admin-token"}]));
    assert_ne!(volume["secret"]["optional"], true, "no Secret, no pod: never open");
    let mount = mount_of(pod, volume);
    assert_eq!(mount["readOnly"], true);
    assert!(mount.get("subPath").is_none(), "the whole volume, so a rotated Secret reaches the file");
    let file = format!("{}/admin-token", mount["mountPath"].as_str().unwrap());
    assert_eq!(env_value(&env, "ADMIN_TOKEN_FILE"), Some(json!(file)));
    assert!(env.iter().all(|e| e["name"] != "ADMIN_TOKEN"), "the token itself is never in env");
    assert!(
        env.iter().all(|e| e["valueFrom"]["secretKeyRef"]["name"] != "s"),
        "nor read from the Secret into an env var"
    );

    assert_eq!(env_value(&env, "AUTH_ANONYMOUS"), Some(json!("deny")));
    assert_eq!(env_value(&env, "AUTH_ANONYMOUS_DATASETS"), Some(json!("support,sensors")));
    assert_eq!(env_value(&env, "OIDC_ISSUER"), Some(json!("https://id.example.com/realms/data")));
    assert_eq!(env_value(&env, "OIDC_AUDIENCE"), Some(json!("csv-analyst")));
    assert_eq!(env_value(&env, "OIDC_DATASETS_CLAIM"), Some(json!("datasets")));
    assert_eq!(env_value(&env, "OIDC_ADMIN_CLAIM"), Some(json!("groups")));
    assert_eq!(env_value(&env, "OIDC_ADMIN_VALUE"), Some(json!("csv-admins")));
    assert_eq!(env_value(&env, "TRUSTED_PROXIES"), Some(json!("10.42.0.0/16,fd00::/8")));
    assert_eq!(env_value(&env, "TRUSTED_PROXY_HEADER"), Some(json!("X-Forwarded-User")));
    assert_eq!(env_value(&env, "TRUSTED_PROXY_DATASETS"), Some(json!("support")));
    // The service may reach the issuer's keys, after the LLM rule.
    let policy = find(&docs, "NetworkPolicy", "csv-analyst-csv-analyst-chat");
    assert_eq!(
        policy["spec"]["egress"][3],
        json!({"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 443, "protocol": "TCP"}]})
    );

    // Another key of the Secret; OIDC claims left to the service's defaults.
    let docs = documents(&helm.template(&[
        "--set",
        "auth.adminToken.existingSecret=csv-analyst-admin",
        "--set",
        "auth.adminToken.key=token",
    ]));
    let pod = &find(&docs, "Deployment", "csv-analyst-csv-analyst-chat")["spec"]["template"]["spec"];
    let volume = pod["volumes"].as_array().unwrap().iter().find(|v| v["secret"].is_object()).unwrap();
    assert_eq!(volume["secret"]["secretName"], "csv-analyst-admin");
    assert_eq!(volume["secret"]["items"], json!([{"key": "token", "path": "admin-token"}]));
    let env = container_env(&docs);
    assert!(env.iter().all(|e| e["name"] != "OIDC_DATASETS_CLAIM" && e["name"] != "TRUSTED_PROXIES"));
}

#[test]
fn chart_refuses_an_ingress_nobody_authenticates_at() {
    let Some(helm) = Helm::new() else { return };
    let (ok, text) = helm.run(&["template", "x", "./helm/csv-analyst-chat", "--set", "ingress.enabled=true"]);
    assert!(!ok, "an ingress with auth off rendered:\n{text}");
    assert!(text.contains("ingress.enabled=true would publish the service with no authentication"), "{text}");
    for named in [
        "auth.adminToken.existingSecret",
        "auth.oidc.issuer",
        "auth.trustedProxyHeader",
        "auth.allowUnauthenticatedIngress=true",
    ] {
        assert!(text.contains(named), "the message names {named}: {text}");
    }

    // Auth on but anonymous querying left on is still an open ingress.
    let (ok, text) = helm.run(&[
        "template",
        "x",
        "./helm/csv-analyst-chat",
        "--set",
        "ingress.enabled=true",
        "--set",
        "auth.adminToken.existingSecret=s",
    ]);
    assert!(!ok && text.contains("auth.anonymous=run lets anyone"), "{text}");

    let auths: [&[&str]; 4] = [
        &["auth.allowUnauthenticatedIngress=true"],
        &["auth.adminToken.existingSecret=s", "auth.anonymous=deny"],
        &["auth.oidc.issuer=https://id.example.com", "auth.oidc.audience=csv-analyst", "auth.anonymous=deny"],
        &["auth.trustedProxyHeader=X-Forwarded-User", "auth.trustedProxies={10.42.0.0/16}", "auth.anonymous=deny"],
    ];
    for auth in auths {
        let mut args = vec!["--set", "ingress.enabled=true"];
        for &value in auth {
            args.extend(["--set", value]);
        }
        let yaml = helm.template(&args);
        validate_strictly(&yaml);
        find(&documents(&yaml), "Ingress", "csv-analyst-csv-analyst-chat");
    }
    // The runbook's public endpoint on k3s, with its exact flags: its install, the
    // Ingress, the admin token's Secret, no queries without a token.
    let mut args = SEED_FLAGS.to_vec();
    args.extend([
        "--set",
        "ingress.enabled=true",
        "--set",
        "ingress.hosts[0].host=csv.example.com",
        "--set",
        "auth.adminToken.existingSecret=csv-analyst-admin",
        "--set",
        "auth.anonymous=deny",
    ]);
    let yaml = helm.template(&args);
    validate_strictly(&yaml);
    let docs = documents(&yaml);
    let rule = &find(&docs, "Ingress", "csv-analyst-csv-analyst-chat")["spec"]["rules"][0];
    assert_eq!(rule["host"], "csv.example.com");
    // --set replaces the whole hosts list: a host given alone serves every path.
    assert_eq!(rule["http"]["paths"][0]["path"], "/");
    assert_eq!(rule["http"]["paths"][0]["pathType"], "Prefix");
    let env = container_env(&docs);
    assert_eq!(env_value(&env, "ADMIN_TOKEN_FILE"), Some(json!("/var/run/secrets/csv-analyst/admin-token")));
    assert_eq!(env_value(&env, "AUTH_ANONYMOUS"), Some(json!("deny")));

    // Settings that cannot work together are refused at render, naming what is missing.
    let mismatched: [(&[&str], &str); 4] = [
        (&["auth.oidc.issuer=https://id.example.com"], "auth.oidc.issuer is set without auth.oidc.audience"),
        (&["auth.oidc.audience=csv-analyst"], "need auth.oidc.issuer"),
        (
            &[
                "auth.oidc.issuer=https://id.example.com",
                "auth.oidc.audience=csv-analyst",
                "auth.oidc.adminClaim=groups",
            ],
            "auth.oidc.adminClaim and auth.oidc.adminValue go together",
        ),
        (&["auth.trustedProxyHeader=X-Forwarded-User"], "auth.trustedProxyHeader is set without auth.trustedProxies"),
    ];
    for (values, message) in mismatched {
        let mut args = vec!["template", "x", "./helm/csv-analyst-chat"];
        for &value in values {
            args.extend(["--set", value]);
        }
        let (ok, text) = helm.run(&args);
        assert!(!ok, "{values:?} rendered:\n{text}");
        assert!(text.contains(message), "{values:?}: {text}");
    }
}

#[test]
fn chart_refuses_auth_values_it_does_not_know() {
    let Some(helm) = Helm::new() else { return };
    for (bad, named) in [
        ("auth.adminTokn.existingSecret=s", "auth: Additional property adminTokn"),
        ("auth.bogus=true", "auth: Additional property bogus"),
        ("auth.adminToken.secret=s", "auth.adminToken: Additional property secret"),
        ("auth.oidc.issuerUrl=https://id.example.com", "auth.oidc: Additional property issuerUrl"),
        ("auth.anonymous=maybe", "auth.anonymous"),
        ("auth.oidc.issuer=ftp://id.example.com", "auth.oidc.issuer"),
        ("auth.oidc.issuer=http://id.example.com", "auth.oidc.issuer"),
        ("auth.trustedProxies={proxy.example.com}", "auth.trustedProxies"),
        ("auth.anonymousDatasets={support,a b}", "auth.anonymousDatasets"),
        ("auth.allowUnauthenticatedIngress=yes", "auth.allowUnauthenticatedIngress"),
        // The admin token never goes in env; the auth settings only through auth.*.
        ("env.ADMIN_TOKEN=an-admin-token-of-20-chars", "env.ADMIN_TOKEN"),
        ("env.ADMIN_TOKEN_FILE=/tmp/token", "env.ADMIN_TOKEN_FILE"),
        ("env.OIDC_ISSUER=https://id.example.com", "env.OIDC_ISSUER"),
        ("env.TRUSTED_PROXY_HEADER=X-Forwarded-User", "env.TRUSTED_PROXY_HEADER"),
    ] {
        let (ok, text) = helm.run(&["template", "x", "./helm/csv-analyst-chat", "--set", bad]);
        assert!(!ok, "--set {bad} rendered:\n{text}");
        assert!(text.contains("schema") && text.contains(named), "{bad}: {text}");
    }
}

#[test]
fn chart_gives_runner_jobs_its_pull_secrets_and_takes_extra_env_and_volumes() {
    let Some(helm) = Helm::new() else { return };
    let mut args = SEED_FLAGS.to_vec();
    args.extend_from_slice(&[
        "--set-json",
        r#"imagePullSecrets=[{"name":"regcred"},{"name":"mirror"}]"#,
        "--set-json",
        r#"extraEnv=[{"name":"SSL_CERT_FILE","value":"/etc/ca/ca.crt"},{"name":"FROM_SECRET","valueFrom":{"secretKeyRef":{"name":"s","key":"k"}}}]"#,
        "--set-json",
        r#"extraVolumes=[{"name":"ca","configMap":{"name":"corp-ca"}}]"#,
        "--set-json",
        r#"extraVolumeMounts=[{"name":"ca","mountPath":"/etc/ca","readOnly":true}]"#,
    ]);
    let yaml = helm.template(&args);
    validate_strictly(&yaml);
    let docs = documents(&yaml);
    let pod = &find(&docs, "Deployment", "csv-analyst-csv-analyst-chat")["spec"]["template"]["spec"];
    assert_eq!(pod["imagePullSecrets"], json!([{"name": "regcred"}, {"name": "mirror"}]));
    let env = container_env(&docs);
    assert_eq!(env_value(&env, "K8S_IMAGE_PULL_SECRETS"), Some(json!("regcred,mirror")), "runner Jobs pull with them");
    assert_eq!(env_value(&env, "SSL_CERT_FILE"), Some(json!("/etc/ca/ca.crt")));
    let from_secret = env.iter().find(|e| e["name"] == "FROM_SECRET").unwrap();
    assert_eq!(from_secret["valueFrom"]["secretKeyRef"], json!({"name": "s", "key": "k"}));
    assert!(pod["volumes"].as_array().unwrap().contains(&json!({"name": "ca", "configMap": {"name": "corp-ca"}})));
    let mounts = pod["containers"][0]["volumeMounts"].as_array().unwrap();
    assert!(mounts.contains(&json!({"name": "ca", "mountPath": "/etc/ca", "readOnly": true})), "{mounts:?}");

    // Without pull secrets nothing is passed on; a mount without a path is refused.
    let env = container_env(&documents(&helm.template(SEED_FLAGS)));
    assert_eq!(env_value(&env, "K8S_IMAGE_PULL_SECRETS"), None);
    let mut args = vec!["template", "csv-analyst", "./helm/csv-analyst-chat", "-n", "csv-analyst"];
    args.extend_from_slice(SEED_FLAGS);
    args.extend_from_slice(&["--set-json", r#"extraVolumeMounts=[{"name":"ca"}]"#]);
    let (ok, text) = helm.run(&args);
    assert!(!ok && text.contains("mountPath"), "{text}");
}

/// The chart's full name for release csv-analyst, as `Helm::template` renders it.
const FULLNAME: &str = "csv-analyst-csv-analyst-chat";

/// `helm template` of the test's release with each of `values` as a `--set`,
/// expected to fail: its output.
fn template_failure(helm: &Helm, values: &[&str]) -> String {
    let mut args = vec!["template", "csv-analyst", "./helm/csv-analyst-chat", "-n", "csv-analyst"];
    for &value in values {
        args.extend(["--set", value]);
    }
    let (ok, text) = helm.run(&args);
    assert!(!ok, "{values:?} rendered:\n{text}");
    text
}

/// The rendered stream without its documents of `kind`.
fn without_kind(yaml: &str, kind: &str) -> String {
    yaml.split("\n---\n")
        .filter(|doc| serde_yaml_ng::from_str::<Value>(doc).ok().is_none_or(|d| d["kind"] != kind))
        .collect::<Vec<_>>()
        .join("\n---\n")
}

/// The Deployment's `checksum/config` pod annotation, rendered with `extra`.
fn config_checksum(helm: &Helm, extra: &[&str]) -> String {
    let docs = documents(&helm.template(extra));
    let deployment = find(&docs, "Deployment", FULLNAME);
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    annotations["checksum/config"].as_str().expect("a checksum/config pod annotation").to_string()
}

#[test]
fn chart_refuses_more_than_one_replica_without_postgres() {
    let Some(helm) = Helm::new() else { return };
    let message = "replicaCount > 1 needs a shared store: set store.postgres.url or store.postgres.existingSecret \
                   (SQLite is one file on one pod's volume)";
    let cases: [&[&str]; 2] = [&["replicaCount=3"], &["replicaCount=2", "persistence.enabled=false"]];
    for values in cases {
        let text = template_failure(&helm, values);
        assert!(text.contains(message), "{values:?}: {text}");
    }

    // PostgreSQL from one place only; uploads every replica mounts must be ReadWriteMany.
    let text = template_failure(
        &helm,
        &["store.postgres.url=postgres://csv:pw@db:5432/csv", "store.postgres.existingSecret=csv-analyst-store"],
    );
    assert!(text.contains("store.postgres.url and store.postgres.existingSecret are both set"), "{text}");
    let text = template_failure(
        &helm,
        &[
            "replicaCount=2",
            "store.postgres.existingSecret=csv-analyst-store",
            "uploads.enabled=true",
            "uploads.persistence.accessModes={ReadWriteOnce}",
        ],
    );
    assert!(text.contains("must be ReadWriteMany"), "{text}");
}

#[test]
fn chart_runs_several_replicas_on_postgres_from_an_existing_secret() {
    let Some(helm) = Helm::new() else { return };
    let mut args = SEED_FLAGS.to_vec();
    args.extend(["--set", "replicaCount=3", "--set", "store.postgres.existingSecret=csv-analyst-store"]);
    let yaml = helm.template(&args);
    validate_strictly(&yaml);
    let docs = documents(&yaml);
    let deployment = find(&docs, "Deployment", FULLNAME);
    let selector = &deployment["spec"]["selector"]["matchLabels"];
    assert_eq!(deployment["spec"]["replicas"], 3);
    // A new pod gets ready before an old one goes: no moment with fewer than 3 serving.
    assert_eq!(
        deployment["spec"]["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}})
    );

    let budget = find(&docs, "PodDisruptionBudget", FULLNAME);
    assert_eq!(budget["apiVersion"], "policy/v1");
    assert_eq!(budget["spec"]["maxUnavailable"], 1);
    assert_eq!(budget["spec"]["selector"]["matchLabels"], *selector);

    let pod = &deployment["spec"]["template"]["spec"];
    let spread = pod["topologySpreadConstraints"].as_array().expect("topologySpreadConstraints");
    assert_eq!(spread.len(), 1);
    assert_eq!(spread[0]["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(spread[0]["whenUnsatisfiable"], "ScheduleAnyway");
    assert_eq!(spread[0]["maxSkew"], 1);
    assert_eq!(spread[0]["labelSelector"]["matchLabels"], *selector);

    // The URL is a file from the Secret, read-only; never an env value or secretKeyRef.
    let volume = secret_volume(pod, "csv-analyst-store");
    assert_eq!(volume["secret"]["items"], json!([{"key": "url", "path": "url"}]));
    assert_ne!(volume["secret"]["optional"], true, "no Secret, no pod");
    let mount = mount_of(pod, volume);
    assert_eq!(mount["readOnly"], true);
    assert!(mount.get("subPath").is_none(), "the whole volume");
    let env = container_env(&docs);
    let file = format!("{}/url", mount["mountPath"].as_str().unwrap());
    assert_eq!(env_value(&env, "RUN_STORE_URL_FILE"), Some(json!(file)));
    for unset in ["RUN_STORE_URL", "RUN_STORE_PATH", "RUN_LEASE_SECONDS"] {
        assert!(env.iter().all(|e| e["name"] != unset), "{unset} rendered");
    }
    assert!(
        env.iter().all(|e| e["valueFrom"]["secretKeyRef"]["name"] != "csv-analyst-store"),
        "the URL is not read into an env var"
    );

    // No SQLite claim, created or mounted; no Secret either (both Secrets exist already).
    assert!(docs.iter().all(|d| d["kind"] != "PersistentVolumeClaim"), "no SQLite claim");
    assert!(
        pod["volumes"].as_array().unwrap().iter().all(|v| v.get("persistentVolumeClaim").is_none()),
        "no claim mounted: {}",
        pod["volumes"]
    );
    assert!(docs.iter().all(|d| d["kind"] != "Secret"), "existing Secrets are used, none created");

    // The service may reach the database.
    let policy = find(&docs, "NetworkPolicy", FULLNAME);
    let database = json!({"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 5432, "protocol": "TCP"}]});
    assert!(policy["spec"]["egress"].as_array().unwrap().contains(&database), "{}", policy["spec"]["egress"]);

    // Another key of the Secret, a lease of its own, uploads every replica mounts.
    let mut args = SEED_FLAGS.to_vec();
    args.extend([
        "--set",
        "replicaCount=2",
        "--set",
        "store.postgres.existingSecret=csv-analyst-store",
        "--set",
        "store.postgres.existingSecretKey=dsn",
        "--set",
        "store.leaseSeconds=45",
        "--set",
        "uploads.enabled=true",
    ]);
    let yaml = helm.template(&args);
    validate_strictly(&yaml);
    let docs = documents(&yaml);
    let pod = &find(&docs, "Deployment", FULLNAME)["spec"]["template"]["spec"];
    let volume = secret_volume(pod, "csv-analyst-store");
    assert_eq!(volume["secret"]["items"], json!([{"key": "dsn", "path": "url"}]), "existingSecretKey");
    let env = container_env(&docs);
    assert_eq!(env_value(&env, "RUN_LEASE_SECONDS"), Some(json!("45")));
    assert_eq!(env_value(&env, "UPLOADS_DIR"), Some(json!("/var/lib/csv-analyst/uploads")));
    let claims: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "PersistentVolumeClaim").collect();
    assert_eq!(claims.len(), 1, "the uploads claim only");
    assert_eq!(claims[0]["metadata"]["name"], format!("{FULLNAME}-uploads"));
    assert_eq!(claims[0]["spec"]["accessModes"], json!(["ReadWriteMany"]));

    assert!(env.iter().all(|e| e["name"] != "RUN_STORE_CA_FILE"), "no CA Secret, no CA file");

    // The runbook's install with two replicas, with its exact flags: CloudNativePG's
    // CA certificate, a file from its Secret.
    let mut args = SEED_FLAGS.to_vec();
    args.extend([
        "--set",
        "replicaCount=2",
        "--set",
        "store.postgres.existingSecret=csv-analyst-store",
        "--set",
        "store.postgres.caSecret=csv-analyst-db-ca",
    ]);
    let yaml = helm.template(&args);
    validate_strictly(&yaml);
    let docs = documents(&yaml);
    assert_eq!(find(&docs, "Deployment", FULLNAME)["spec"]["replicas"], 2);
    find(&docs, "PodDisruptionBudget", FULLNAME);
    let pod = &find(&docs, "Deployment", FULLNAME)["spec"]["template"]["spec"];
    let ca = secret_volume(pod, "csv-analyst-db-ca");
    assert_eq!(ca["secret"]["items"], json!([{"key": "ca.crt", "path": "ca.crt"}]));
    let mount = mount_of(pod, ca);
    let env = container_env(&docs);
    let file = format!("{}/ca.crt", mount["mountPath"].as_str().unwrap());
    assert_eq!(env_value(&env, "RUN_STORE_CA_FILE"), Some(json!(file)));
}

#[test]
fn chart_keeps_a_postgres_url_it_is_given_in_a_secret_of_its_own() {
    let Some(helm) = Helm::new() else { return };
    let url = "postgres://csv_analyst:s3cret-pw@db.example.com:5432/csv_analyst?sslmode=require";
    let set_url = format!("store.postgres.url={url}");
    let yaml = helm.template(&["--set", set_url.as_str()]);
    validate_strictly(&yaml);
    let docs = documents(&yaml);
    let secret = find(&docs, "Secret", &format!("{FULLNAME}-store"));
    assert_eq!(secret["stringData"], json!({"url": url}));

    let deployment = find(&docs, "Deployment", FULLNAME);
    let pod = &deployment["spec"]["template"]["spec"];
    let volume = secret_volume(pod, &format!("{FULLNAME}-store"));
    assert_eq!(volume["secret"]["items"], json!([{"key": "url", "path": "url"}]));
    let env = container_env(&docs);
    assert_eq!(env_value(&env, "RUN_STORE_URL_FILE"), Some(json!("/var/run/secrets/csv-analyst-store/url")));
    assert_eq!(env_value(&env, "RUN_STORE_PATH"), None);
    let rendered = serde_json::to_string(deployment).unwrap();
    assert!(!rendered.contains("s3cret-pw"), "the password is only in the Secret: {rendered}");

    // One replica on PostgreSQL: no volume to hand over, so a rolling update, but
    // nothing to spread or budget.
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(deployment["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    assert!(pod.get("topologySpreadConstraints").is_none());
    assert!(docs.iter().all(|d| d["kind"] != "PodDisruptionBudget" && d["kind"] != "PersistentVolumeClaim"));
}

#[test]
fn chart_keeps_the_sqlite_claim_and_restarts_pods_when_a_secret_changes() {
    let Some(helm) = Helm::new() else { return };
    let docs = documents(&helm.template(&[]));
    let claim = find(&docs, "PersistentVolumeClaim", &format!("{FULLNAME}-runs"));
    assert_eq!(claim["metadata"]["annotations"]["helm.sh/resource-policy"], "keep", "helm uninstall leaves it");
    let deployment = find(&docs, "Deployment", FULLNAME);
    // One pod and a ReadWriteOnce volume: the old pod lets go before the new one starts.
    assert_eq!(deployment["spec"]["strategy"], json!({"type": "Recreate"}));
    assert_eq!(deployment["spec"]["replicas"], 1);
    let env = container_env(&docs);
    assert_eq!(env_value(&env, "RUN_STORE_PATH"), Some(json!("/var/lib/csv-analyst/runs.sqlite")));
    assert!(env.iter().all(|e| e["name"] != "RUN_STORE_URL_FILE" && e["name"] != "RUN_LEASE_SECONDS"));
    assert!(docs.iter().all(|d| d["kind"] != "PodDisruptionBudget"), "no budget for one pod");

    // The pods restart when a value of the chart's Secrets changes, and only then.
    let first = config_checksum(&helm, &["--set", "secret.openaiApiKey=sk-first"]);
    assert_eq!(first.len(), 64, "a sha256: {first}");
    assert_eq!(config_checksum(&helm, &["--set", "secret.openaiApiKey=sk-first"]), first);
    assert_ne!(config_checksum(&helm, &["--set", "secret.openaiApiKey=sk-second"]), first);
    assert_eq!(
        config_checksum(&helm, &["--set", "secret.openaiApiKey=sk-first", "--set", "auth.anonymous=deny"]),
        first
    );
    let postgres = config_checksum(&helm, &["--set", "store.postgres.url=postgres://csv:one@db:5432/csv"]);
    assert_ne!(config_checksum(&helm, &["--set", "store.postgres.url=postgres://csv:two@db:5432/csv"]), postgres);
}

#[test]
fn chart_renders_a_service_monitor_only_when_enabled() {
    let Some(helm) = Helm::new() else { return };
    let docs = documents(&helm.template(&[]));
    assert!(docs.iter().all(|d| d["kind"] != "ServiceMonitor"), "no ServiceMonitor unless enabled");
    assert_eq!(find(&docs, "Service", FULLNAME)["spec"]["ports"].as_array().unwrap().len(), 1);

    let yaml = helm.template(&[
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.serviceMonitor.interval=15s",
        "--set",
        "metrics.serviceMonitor.labels.release=kube-prometheus-stack",
    ]);
    let docs = documents(&yaml);
    let monitor = find(&docs, "ServiceMonitor", FULLNAME);
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["namespace"], "csv-analyst");
    assert_eq!(monitor["metadata"]["labels"]["release"], "kube-prometheus-stack", "the operator's selector finds it");
    let service = find(&docs, "Service", FULLNAME);
    assert_eq!(monitor["spec"]["selector"]["matchLabels"], service["spec"]["selector"], "it selects the Service");
    assert_eq!(monitor["spec"]["namespaceSelector"], json!({"matchNames": ["csv-analyst"]}));
    let endpoints = monitor["spec"]["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0]["path"], "/metrics");
    assert_eq!(endpoints[0]["interval"], "15s");
    // The port it names is the Service's, and leads to the probe listener's /metrics.
    let port = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == endpoints[0]["port"])
        .expect("the ServiceMonitor's port is a port of the Service");
    assert_eq!(port["targetPort"], "probe");
    assert_eq!(port["port"], 8001);
    let known = ["apiVersion", "kind", "metadata", "spec"];
    assert!(monitor.as_object().unwrap().keys().all(|k| known.contains(&k.as_str())), "{monitor}");
    let known = ["selector", "namespaceSelector", "endpoints"];
    assert!(monitor["spec"].as_object().unwrap().keys().all(|k| known.contains(&k.as_str())), "{monitor}");
    let known = ["port", "path", "scheme", "interval"];
    assert!(endpoints[0].as_object().unwrap().keys().all(|k| known.contains(&k.as_str())), "{monitor}");

    // kubernetes-validate has Kubernetes' own schemas only: for a ServiceMonitor it
    // warns that it has none and passes it unchecked. So everything else is validated
    // strictly, and the ServiceMonitor's shape is checked above (should the tool
    // learn the CRD, it validates it too).
    let rest = without_kind(&yaml, "ServiceMonitor");
    let rest_docs = documents(&rest);
    assert_eq!(rest_docs.len() + 1, docs.len(), "only the ServiceMonitor is set aside");
    validate_strictly(&rest);
    if let Some((passed, report)) = validation_report(&serde_yaml_ng::to_string(monitor).unwrap()) {
        let unknown = report.contains("Couldn't find schema for kind ServiceMonitor");
        assert!(unknown || (passed && report.contains("passed") && !report.contains("ERROR")), "{report}");
    }
}

#[test]
fn chart_sets_the_spill_cap_and_gives_in_process_runs_a_scratch_volume() {
    let Some(helm) = Helm::new() else { return };
    let docs = documents(&helm.template(SEED_FLAGS));
    let env = container_env(&docs);
    assert_eq!(env_value(&env, "RUN_SPILL_MAX_MB"), Some(json!("2048")), "the service's default cap");
    let pod = &find(&docs, "Deployment", FULLNAME)["spec"]["template"]["spec"];
    let scratch = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "scratch").expect("a scratch volume");
    assert_eq!(scratch["emptyDir"], json!({}), "no slot count, no size to give it");
    let dir = env_value(&env, "RUN_SPILL_DIR").expect("RUN_SPILL_DIR is set");
    assert_eq!(mount_of(pod, scratch)["mountPath"], dir, "in-process runs spill to the scratch volume");

    let mut args = SEED_FLAGS.to_vec();
    args.extend([
        "--set",
        "spill.maxMb=512",
        "--set",
        "env.MAX_CONCURRENT_RUNS=3",
        "--set",
        "env.SANDBOX_PROVIDER=local",
    ]);
    let yaml = helm.template(&args);
    validate_strictly(&yaml);
    let docs = documents(&yaml);
    assert_eq!(env_value(&container_env(&docs), "RUN_SPILL_MAX_MB"), Some(json!("512")));
    let pod = &find(&docs, "Deployment", FULLNAME)["spec"]["template"]["spec"];
    let scratch = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "scratch").unwrap();
    assert_eq!(scratch["emptyDir"]["sizeLimit"], "1536Mi", "three slots of 512 MiB");

    for bad in ["env.RUN_SPILL_MAX_MB=1", "env.RUN_SPILL_DIR=/tmp", "spill.maxMb=-1", "spill.maxMB=1"] {
        let (ok, text) = helm.run(&["template", "x", "./helm/csv-analyst-chat", "--set", bad]);
        assert!(!ok && text.contains("schema"), "--set {bad} rendered:\n{text}");
    }
}
