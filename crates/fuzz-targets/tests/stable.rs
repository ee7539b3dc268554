//! The fuzz targets on the stable toolchain, bounded, in `make test`: each target's seeds
//! (`fuzz/seeds/<target>/`, the same files `make fuzz` starts from) are run as they are,
//! then mutated by a seeded generator — byte flips, inserted bytes and tokens that matter
//! to the grammars, deletions, duplications, splices — for a fixed number of iterations.
//! The same seed gives the same inputs, so a failure replays; the input that made a
//! target panic is written under the test's temporary folder and printed.
//!
//! `SKYHOST_FUZZ_ITERATIONS` (default 5000) and `SKYHOST_FUZZ_SEED` change the run.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use skyhost_fuzz_targets::{Target, TARGETS};
use std::path::PathBuf;

/// Tokens the mutator inserts: pieces of every grammar the targets parse.
const TOKENS: &[&[u8]] = &[
    b"/",
    b"//",
    b".",
    b"..",
    b"%",
    b"%2e",
    b"%2E",
    b"%2f",
    b"%25",
    b"%00",
    b"%5c",
    b"%c0%ae",
    b"%ff",
    b"\\",
    b"\0",
    b"\r\n",
    b"\n",
    b" ",
    b"\t",
    b"*",
    b":splat",
    b":id",
    b"!",
    b"?",
    b"=",
    b"&",
    b"#",
    b",",
    b";",
    b"\"",
    b"W/",
    b"-",
    b"bytes=",
    b"0",
    b"1",
    b"-1",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"18446744073709551616",
    b"t=",
    b"v1=",
    b"Basic-Auth: ",
    b"a:b",
    b"$argon2id$v=19$m=8,t=1,p=1$",
    b"301",
    b"200",
    b"404",
    b"Country=",
    b"Language=",
    b"https://",
    b"[",
    b"]",
    b"{",
    b"}",
    b"\xc3\xa9",
    b"\xe2\x80\xae",
    b"\xff",
    b"Thu, 01 Jan 1970 00:00:00 GMT",
];

fn iterations() -> usize {
    std::env::var("SKYHOST_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000)
}

fn seed_of(name: &str) -> u64 {
    let base = std::env::var("SKYHOST_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_5ca1_ab1e_u64);
    // FNV-1a of the name: each target its own sequence.
    name.bytes().fold(base ^ 0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn seeds(name: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(name);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    let seeds: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect();
    assert!(!seeds.is_empty(), "{} holds no seed", dir.display());
    seeds
}

fn mutate(rng: &mut StdRng, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    for _ in 0..rng.random_range(1..=4) {
        let at = rng.random_range(0..=input.len());
        match rng.random_range(0..7) {
            0 if !input.is_empty() => {
                let i = rng.random_range(0..input.len());
                input[i] ^= 1 << rng.random_range(0..8);
            }
            1 => input.insert(at, rng.random()),
            2 => {
                let t = TOKENS[rng.random_range(0..TOKENS.len())];
                input.splice(at..at, t.iter().copied());
            }
            3 if !input.is_empty() => {
                let end = (at + rng.random_range(1..=16)).min(input.len());
                input.drain(at.min(end)..end);
            }
            4 if !input.is_empty() => {
                let from = rng.random_range(0..input.len());
                let end = (from + rng.random_range(1..=64)).min(input.len());
                let piece = input[from..end].to_vec();
                input.splice(at..at, piece);
            }
            5 => {
                let other = &seeds[rng.random_range(0..seeds.len())];
                if !other.is_empty() {
                    let from = rng.random_range(0..other.len());
                    let end = (from + rng.random_range(1..=64)).min(other.len());
                    input.splice(at..at, other[from..end].iter().copied());
                }
            }
            _ => input.truncate(at),
        }
    }
}

/// Runs `input` through the target; on a panic, keeps it for replay and describes it.
fn attempt(t: &Target, input: &[u8], what: &str) -> Result<(), String> {
    if std::panic::catch_unwind(|| (t.run)(input)).is_ok() {
        return Ok(());
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
    let file = dir.join(format!("{}-{what}", t.name));
    let kept = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&file, input))
        .map(|()| format!("kept in {}", file.display()))
        .unwrap_or_else(|e| format!("not kept: {e}"));
    Err(format!(
        "{} panicked on {what} ({kept}): {:?}",
        t.name,
        String::from_utf8_lossy(&input[..input.len().min(300)])
    ))
}

fn fuzz(name: &str) {
    let t = TARGETS
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no target {name}"));
    let seeds = seeds(name);
    for (i, s) in seeds.iter().enumerate() {
        if let Err(e) = attempt(t, s, &format!("seed-{i}")) {
            panic!("{e}");
        }
    }
    let mut rng = StdRng::seed_from_u64(seed_of(name));
    for i in 0..iterations() {
        let mut input = if rng.random_range(0..20) == 0 {
            (0..rng.random_range(0..256))
                .map(|_| rng.random())
                .collect()
        } else {
            seeds[rng.random_range(0..seeds.len())].clone()
        };
        mutate(&mut rng, &mut input, &seeds);
        if let Err(e) = attempt(t, &input, &format!("iteration-{i}")) {
            panic!("{e}");
        }
    }
}

#[test]
fn every_target_has_a_test_here() {
    let tested = [
        "parse_redirects",
        "parse_headers",
        "parse_config",
        "match_request",
        "decode_path",
        "range_conditional",
        "notify_signature",
    ];
    let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
    assert_eq!(names, tested);
}

#[test]
fn parse_redirects() {
    fuzz("parse_redirects");
}

#[test]
fn parse_headers() {
    fuzz("parse_headers");
}

#[test]
fn parse_config() {
    fuzz("parse_config");
}

#[test]
fn match_request() {
    fuzz("match_request");
}

#[test]
fn decode_path() {
    fuzz("decode_path");
}

#[test]
fn range_conditional() {
    fuzz("range_conditional");
}

#[test]
fn notify_signature() {
    fuzz("notify_signature");
}
