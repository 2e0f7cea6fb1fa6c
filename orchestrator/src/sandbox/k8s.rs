//! The Kubernetes provider (being written).
use protocol::{ErrorType, RunRequest, RunResult};

use super::Execution;

pub struct K8sProvider;

impl K8sProvider {
    pub async fn connect(_config: &crate::config::Config) -> anyhow::Result<Self> {
        anyhow::bail!("not yet")
    }
}

impl K8sProvider {
    pub async fn run(&self, _run_id: &str, _request: RunRequest) -> Execution {
        Execution {
            result: RunResult::failure(ErrorType::SandboxError, "not yet"),
            job_name: None,
        }
    }

    pub async fn readiness(&self) -> Result<String, String> {
        Err("not yet".into())
    }
}
