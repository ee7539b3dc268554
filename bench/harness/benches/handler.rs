//! `cargo bench -p skyhost-bench`: the handler benchmark of `src/handler_bench.rs`.

fn main() {
    skyhost_bench::handler_bench::main();
}
