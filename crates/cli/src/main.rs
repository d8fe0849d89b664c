//! The `starling` binary: everything lives in the library (`starling_cli`).

fn main() -> std::process::ExitCode {
    starling_cli::main_with_args(std::env::args_os())
}
