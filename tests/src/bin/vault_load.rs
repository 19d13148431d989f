//! `vault-load`: the load generator of issue 6. Many concurrent clients,
//! one account each, write small files to a local `vault-server` (create
//! node, upload object, commit, as a mount does); the run prints requests
//! per second, latency percentiles and, given the server's pid, its memory,
//! as one `key=value` line on stdout for `scripts/bench.sh`.
//!
//! This file is only the command line and the exit status; the design is
//! described in the `load` module (`tests/src/load/`). `vault-load --help`
//! lists the options and the server settings a run needs.

use std::process::ExitCode;

use clap::Parser as _;

#[path = "../load/mod.rs"]
mod load;

use load::{Options, Outcome};

fn main() -> ExitCode {
    let opts = Options::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vault-load: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(load::run(&opts)) {
        Outcome::Ran(summary) => {
            println!("{}", summary.line());
            if summary.errors > 0 {
                eprintln!("vault-load: {} requests failed", summary.errors);
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Outcome::SetupFailed(e) => {
            eprintln!("vault-load: setup failed: {e:#}");
            ExitCode::from(2)
        }
    }
}
