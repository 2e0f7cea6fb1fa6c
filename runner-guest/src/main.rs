//! The runner guest's entry point on `wasm32-wasip1`: one [`RunRequest`] as JSON on
//! stdin, one [`RunResult`] as one JSON line on stdout, exit 0. The host treats
//! anything else (a trap, no output, more than one line) as a sandbox failure.

use std::io::{Read, Write};
use std::time::Instant;

use protocol::{ErrorType, RunRequest, RunResult};

fn main() {
    std::panic::set_hook(Box::new(|info| {
        // wasm32 aborts on panic; say what happened before the trap.
        let message = format!("the query engine panicked: {info}");
        emit(&RunResult::failure(ErrorType::Internal, message));
    }));

    let started = Instant::now();
    let mut result = match read_request() {
        Ok(request) => runner_guest::run(&request),
        Err(message) => RunResult::failure(ErrorType::InvalidRequest, message),
    };
    result.exec_time_ms = started.elapsed().as_millis() as u64;
    emit(&result);
}

fn read_request() -> Result<RunRequest, String> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).map_err(|e| format!("cannot read the request: {e}"))?;
    serde_json::from_str(&input).map_err(|e| format!("the request is not a valid RunRequest: {e}"))
}

fn emit(result: &RunResult) {
    let mut line = result.to_json_line();
    line.push('\n');
    let mut stdout = std::io::stdout().lock();
    // If the host refuses the write (output cap), there is nobody left to tell.
    let _ = stdout.write_all(line.as_bytes());
    let _ = stdout.flush();
}
