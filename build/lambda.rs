//! The build script of every package with a Lambda function binary (and of the cold-start
//! baselines in bench/, so they are linked alike): on Linux, its binaries are linked as
//! position-dependent executables.
//!
//! A position-independent executable is relocated by the dynamic loader at every start: the
//! origin carries about 23,000 relocations, and applying them writes (and so copies) every
//! page of its 340 KiB of relocated read-only data. At a fixed address there is nothing to
//! relocate, which took about 0.3 ms off each cold start, a fifth of it (BENCHMARKS.md,
//! "Cold start"). The cost is that the image itself is not placed at a random address; the
//! heap, the stacks, the shared libraries and every mapping are still randomised.

fn main() {
    println!("cargo:rerun-if-changed=../../build/lambda.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
