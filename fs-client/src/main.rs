//! `vault`: the entry point. Everything, argument parsing included, lives in
//! the library (`fs_client::cli`) so it can be tested.

fn main() -> std::process::ExitCode {
    fs_client::cli::main()
}
