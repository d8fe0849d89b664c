//! The `starling` binary: everything lives in the library (`starling_cli`).

/// mimalloc rather than glibc's malloc: a node allocates and frees small buffers for
/// every message on several threads, where glibc's arenas cost a tenth of the CPU
/// spent per delivered post (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    starling_cli::main_with_args(std::env::args_os())
}
