//! The MCP server: csv-analyst's tools and resources, each call answered for the
//! calling principal (its grants, its runs).

use std::sync::Arc;

use axum::http::request::Parts;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::schema_for_output;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, ListResourceTemplatesResult, ListResourcesResult,
    PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource,
    ResourceContents, ResourceTemplate, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::auth::Caller;
use crate::chat::{ChatRequest, ProgressSink};
use crate::datasets;
use crate::error::Error;
use crate::runs::{Origin, Query, Runs};
use crate::store::Run;

/// Rows of a result shown in a tool's text (the structured content has them all).
const TEXT_ROWS: usize = 20;
/// A cell in the text table is cut to this many characters.
const TEXT_CELL_CHARS: usize = 60;
const SCHEMA_URI_PREFIX: &str = "csv-analyst://datasets/";
const SCHEMA_URI_SUFFIX: &str = "/schema";

/// The MCP server. Cheap to clone; one per request (HTTP) or per process (stdio).
#[derive(Clone)]
pub struct Analyst {
    runs: Runs,
    chat: crate::chat::Chat,
    /// The caller of every request (stdio); `None`: each HTTP request's own, put in
    /// its extensions by the edge.
    caller: Option<Arc<Caller>>,
    tool_router: ToolRouter<Analyst>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct DatasetArgs {
    /// A dataset id, as `list_datasets` gives it.
    pub dataset_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct RunSqlArgs {
    /// A dataset id, as `list_datasets` gives it.
    pub dataset_id: String,
    /// One read-only SQL query (a SELECT or WITH; DataFusion's dialect) over the
    /// dataset's tables.
    pub sql: String,
    /// Fewer rows than the service's MAX_ROWS, if wanted.
    #[serde(default)]
    pub max_rows: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct RunPlanArgs {
    pub dataset_id: String,
    /// A QueryPlan (its JSON schema: the `plan` property of this tool's input schema).
    pub plan: Value,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct AskArgs {
    pub dataset_id: String,
    /// A question about the dataset, in words.
    pub question: String,
    /// A thread to continue (from an earlier `ask`), if any.
    #[serde(default)]
    pub thread_id: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct GetRunArgs {
    pub run_id: String,
}

/// What `run_sql` and `run_plan` return.
#[derive(Debug, Serialize, JsonSchema)]
pub struct RunOutput {
    pub run_id: String,
    /// `succeeded` (a failed or refused run is a tool error instead).
    pub status: String,
    pub columns: Vec<String>,
    pub column_types: Vec<String>,
    /// Rows as arrays, in column order.
    pub rows: Vec<Vec<Value>>,
    pub row_count: u64,
    /// Whether the rows stop at MAX_ROWS or the output cap.
    pub truncated: bool,
}

/// What `list_datasets` returns.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DatasetsOutput {
    pub datasets: Vec<Value>,
}

fn tool_error(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message.into())])
}

/// A domain error as a tool error: `TYPE: message`.
fn error_result(e: &Error) -> CallToolResult {
    tool_error(format!("{}: {e}", e.error_type()))
}

/// A structured result with a short text beside it.
fn structured(value: Value, text: String) -> CallToolResult {
    let mut result = CallToolResult::structured(value);
    result.content = vec![ContentBlock::text(text)];
    result
}

#[tool_router]
impl Analyst {
    /// A server for `runs` and `chat`; `caller` fixed (stdio) or per request (HTTP).
    /// `ask` is offered only when a model is configured.
    pub fn new(runs: Runs, chat: crate::chat::Chat, caller: Option<Caller>) -> Analyst {
        let mut tool_router = Self::tool_router();
        if !chat.has_model() {
            tool_router.remove_route("ask");
        }
        Analyst { runs, chat, caller: caller.map(Arc::new), tool_router }
    }

    /// The caller of a request: the fixed one, or the one the HTTP edge authenticated.
    fn caller(&self, context: &RequestContext<RoleServer>) -> Result<Caller, McpError> {
        if let Some(caller) = &self.caller {
            return Ok(caller.as_ref().clone());
        }
        context
            .extensions
            .get::<Parts>()
            .and_then(|parts| parts.extensions.get::<Caller>())
            .cloned()
            .ok_or_else(|| McpError::internal_error("the request carries no authenticated caller", None))
    }

    /// Who asked, with the HTTP request's id (none over stdio).
    fn origin(caller: Caller, context: &RequestContext<RoleServer>) -> Origin {
        let request_id = context
            .extensions
            .get::<Parts>()
            .and_then(|parts| parts.headers.get("x-request-id"))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Origin { request_id, turn_id: None, client: caller.client, principal: caller.principal, channel: "mcp" }
    }

    #[tool(
        description = "List the datasets you may query: ids, names, descriptions and tables (with row counts).",
        annotations(read_only_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<DatasetsOutput>()
    )]
    async fn list_datasets(&self, context: RequestContext<RoleServer>) -> Result<CallToolResult, McpError> {
        let caller = self.caller(&context)?;
        let views = datasets::list(self.runs.catalog(), &caller.principal);
        let text = views
            .iter()
            .map(|d| {
                let tables: Vec<&str> = d.tables.iter().map(|t| t.name.as_str()).collect();
                format!("{} ({}): {} — tables: {}", d.id, d.name, d.description, tables.join(", "))
            })
            .collect::<Vec<_>>()
            .join("\n");
        let datasets = views.iter().map(|d| serde_json::to_value(d).unwrap_or(Value::Null)).collect();
        Ok(structured(json!(DatasetsOutput { datasets }), text))
    }

    #[tool(
        description = "Describe a dataset: its tables, their columns with types and descriptions, row counts, \
                       the range of date columns and a few sample rows. Read it before writing SQL.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn describe_dataset(
        &self,
        Parameters(args): Parameters<DatasetArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let caller = self.caller(&context)?;
        let dataset = match self.runs.catalog().dataset_for(&args.dataset_id, &caller.principal) {
            Ok(dataset) => dataset.id.clone(),
            Err(e) => return Ok(error_result(&e)),
        };
        match self.runs.schema(&dataset).await {
            Ok(view) => {
                let value = serde_json::to_value(view.as_ref()).unwrap_or(Value::Null);
                let text = view
                    .tables
                    .iter()
                    .map(|t| {
                        let columns: Vec<String> =
                            t.columns.iter().map(|c| format!("{} {}", c.name, c.column_type)).collect();
                        format!("{} ({} rows): {}", t.name, t.row_count.unwrap_or_default(), columns.join(", "))
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                Ok(structured(value, text))
            }
            Err(e) => Ok(error_result(&e)),
        }
    }

    #[tool(
        description = "Run one read-only SQL query (SELECT or WITH, DataFusion's dialect) over a dataset in a \
                       WebAssembly sandbox, under the service's time, memory and row limits. A refused or failed \
                       query is a tool error whose message says what to change.",
        annotations(read_only_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<RunOutput>()
    )]
    async fn run_sql(
        &self,
        Parameters(args): Parameters<RunSqlArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let caller = self.caller(&context)?;
        if args.sql.trim().is_empty() {
            return Ok(tool_error("INVALID_REQUEST: sql must not be empty"));
        }
        self.run(&args.dataset_id, Query::Sql(args.sql), args.max_rows, Self::origin(caller, &context)).await
    }

    #[tool(
        description = "Run a QueryPlan (a JSON description of one query over one table: columns, filters, \
                       aggregates, order, limit; no SQL) over a dataset in the sandbox. The plan's JSON schema is \
                       the `plan` property of this tool's input schema.",
        annotations(read_only_hint = true, open_world_hint = false),
        input_schema = plan_input_schema(),
        output_schema = schema_for_output::<RunOutput>()
    )]
    async fn run_plan(
        &self,
        Parameters(args): Parameters<RunPlanArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let caller = self.caller(&context)?;
        self.run(&args.dataset_id, Query::Plan(args.plan), None, Self::origin(caller, &context)).await
    }

    #[tool(
        description = "Ask a question about a dataset in words: the service's analyst agent writes and runs the \
                       queries in the sandbox and answers from their results (with the runs it made).",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn ask(
        &self,
        Parameters(args): Parameters<AskArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let caller = self.caller(&context)?;
        let request = ChatRequest { dataset_id: args.dataset_id, message: args.question, thread_id: args.thread_id };
        let mut prepared = match self.chat.prepare(request, caller.principal, caller.client).await {
            Ok(prepared) => prepared,
            Err(e) => return Ok(error_result(&e)),
        };
        prepared.channel = "mcp";
        // The turn's own task: it finishes and is recorded if the client goes away.
        let chat = self.chat.clone();
        let turn = tokio::spawn(async move { chat.run(prepared, "mcp", ProgressSink::default()).await });
        let response = turn.await.map_err(|e| McpError::internal_error(format!("the turn failed: {e}"), None))?;
        let value = serde_json::to_value(&response).unwrap_or(Value::Null);
        if let Some(error) = response.error.as_ref().filter(|_| response.run_id.is_none()) {
            return Ok(tool_error(format!("{}: {}", error.error_type, error.message)));
        }
        Ok(structured(value, response.assistant_message.clone()))
    }

    #[tool(
        description = "Read a run you made (through any channel): its status, SQL, result rows or error.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_run(
        &self,
        Parameters(args): Parameters<GetRunArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let caller = self.caller(&context)?;
        match self.runs.get(&args.run_id, &caller.principal).await {
            Ok(run) => {
                let text = format!("run {} {} ({})", run.run_id, run.status.as_str(), run.sql.text);
                Ok(structured(serde_json::to_value(&run).unwrap_or(Value::Null), text))
            }
            Err(e) => Ok(error_result(&e)),
        }
    }
}

impl Analyst {
    /// One query through the run service; a run that did not succeed is a tool error.
    async fn run(
        &self,
        dataset_id: &str,
        query: Query,
        max_rows: Option<u64>,
        origin: Origin,
    ) -> Result<CallToolResult, McpError> {
        let limits = match self.runs.limits(max_rows, None) {
            Ok(limits) => limits,
            Err(e) => return Ok(error_result(&e)),
        };
        match self.runs.execute(dataset_id, query, limits, origin).await {
            Ok(run) => Ok(run_result(&run)),
            Err(e) => Ok(error_result(&e)),
        }
    }
}

/// A finished run as a tool result: its rows, structured and as a short table; a
/// run that did not succeed as a tool error with its type, message and id.
fn run_result(run: &Run) -> CallToolResult {
    let Some(result) = run.result.as_ref().filter(|_| run.error.is_none()) else {
        let (error_type, message) =
            run.error.as_ref().map_or(("INTERNAL", "the run has no result"), |e| (e.error_type.as_str(), &e.message));
        return tool_error(format!("{error_type}: {message} (run {}, {})", run.run_id, run.status.as_str()));
    };
    let output = RunOutput {
        run_id: run.run_id.clone(),
        status: run.status.as_str().to_string(),
        columns: result.columns.clone(),
        column_types: result.column_types.clone(),
        rows: result.rows.clone(),
        row_count: result.row_count,
        truncated: result.truncated,
    };
    let mut text = format!(
        "run {}: {} row{}{}\n{}",
        run.run_id,
        result.row_count,
        if result.row_count == 1 { "" } else { "s" },
        if result.truncated { " (truncated)" } else { "" },
        result.columns.join(" | ")
    );
    for row in result.rows.iter().take(TEXT_ROWS) {
        let cells: Vec<String> = row.iter().map(cell_text).collect();
        text.push('\n');
        text.push_str(&cells.join(" | "));
    }
    if result.rows.len() > TEXT_ROWS {
        text.push_str(&format!("\n… {} more rows in the structured content", result.rows.len() - TEXT_ROWS));
    }
    structured(serde_json::to_value(&output).unwrap_or(Value::Null), text)
}

fn cell_text(value: &Value) -> String {
    let text = match value {
        Value::Null => "NULL".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.chars().count() > TEXT_CELL_CHARS {
        format!("{}…", text.chars().take(TEXT_CELL_CHARS).collect::<String>())
    } else {
        text
    }
}

/// `run_plan`'s input: a dataset id and a plan of the QueryPlan JSON schema.
fn plan_input_schema() -> Arc<Map<String, Value>> {
    let mut plan = crate::plan::json_schema();
    if let Some(object) = plan.as_object_mut() {
        object.remove("$schema");
    }
    let schema = json!({
        "type": "object",
        "properties": {
            "dataset_id": {"type": "string", "description": "A dataset id, as list_datasets gives it."},
            "plan": plan,
        },
        "required": ["dataset_id", "plan"],
    });
    Arc::new(schema.as_object().cloned().unwrap_or_default())
}

fn schema_uri(dataset_id: &str) -> String {
    format!("{SCHEMA_URI_PREFIX}{dataset_id}{SCHEMA_URI_SUFFIX}")
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Analyst {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().enable_resources().build())
            .with_server_info(Implementation::new("csv-analyst", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "csv-analyst runs read-only SQL over curated CSV datasets in a WebAssembly sandbox. Start with \
                 list_datasets, then describe_dataset, then run_sql (DataFusion's dialect: SELECT/WITH only). A \
                 refused query's error says what to change.",
            )
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let caller = self.caller(&context)?;
        let resources = datasets::list(self.runs.catalog(), &caller.principal)
            .into_iter()
            .map(|d| {
                Resource::new(schema_uri(&d.id), format!("{} schema", d.id))
                    .with_description(format!("Tables and columns of the dataset {}", d.name))
                    .with_mime_type("application/json")
            })
            .collect();
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        let template = ResourceTemplate::new(schema_uri("{dataset_id}"), "dataset schema")
            .with_description("Tables and columns of a dataset, as describe_dataset gives them")
            .with_mime_type("application/json");
        Ok(ListResourceTemplatesResult::with_all_items(vec![template]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let caller = self.caller(&context)?;
        let not_found = || McpError::resource_not_found(format!("no resource {}", request.uri), None);
        let dataset_id = request
            .uri
            .strip_prefix(SCHEMA_URI_PREFIX)
            .and_then(|rest| rest.strip_suffix(SCHEMA_URI_SUFFIX))
            .ok_or_else(not_found)?;
        let dataset = self.runs.catalog().dataset_for(dataset_id, &caller.principal).map_err(|_| not_found())?;
        let view = self
            .runs
            .schema(&dataset.id)
            .await
            .map_err(|e| McpError::internal_error(format!("{}: {e}", e.error_type()), None))?;
        let text = serde_json::to_string(view.as_ref()).unwrap_or_default();
        let contents = match ResourceContents::text(text, request.uri.clone()) {
            ResourceContents::TextResourceContents { uri, text, meta, .. } => {
                ResourceContents::TextResourceContents { uri, mime_type: Some("application/json".into()), text, meta }
            }
            other => other,
        };
        Ok(ReadResourceResult::new(vec![contents]).into())
    }
}
