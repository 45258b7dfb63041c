//! The request parser never panics, whatever a client sends.
//!
//! The libFuzzer target's harness body (`tests/fuzz/src/bridge.rs`, which also checks
//! that a parsed request re-serializes to the same request) is fed the committed seeds
//! (`tests/fuzz/seeds/bridge_request/`, the doc's request examples), which must all
//! parse, then 5,000 byte-level mutations of them (`tests/fuzz/src/mutator.rs`) and
//! 5,000 structural JSON mutations (values swapped for other JSON values, members
//! added or removed), which reach the typed params far more often than flipped bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(unreachable_pub, dead_code)]
#[path = "../../../tests/fuzz/src/bridge.rs"]
mod harness;
#[allow(unreachable_pub, dead_code)]
#[path = "../../../tests/fuzz/src/mutator.rs"]
mod mutator;

use mutator::Rng;
use serde_json::{Map, Value, json};

const ITERATIONS: usize = 5_000;

#[test]
fn request_parser_never_panics_on_mutated_bytes() {
    mutator::run(env!("CARGO_MANIFEST_DIR"), "bridge_request", harness::bridge_request, ITERATIONS);
}

fn random_value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth > 2 { 9 } else { 12 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 => json!(rng.next_u64() as i64),
        3 => json!(rng.pick(&[0i64, -1, 1, 7, i64::MAX, i64::MIN, 4_294_967_296])),
        4 => json!(rng.pick(&[0.5f64, -1e300, 1e-9])),
        5 => json!(rng.pick(&["", "2.0", "sm3", "raw", "inline", "upload", "device.added", "aGk=", "===", "张三"])),
        6 => json!("0123456789abcdef0123456789ABCDEF01234567"),
        7 => json!(rng.pick(&["sign", "encrypt", "both", "cms_attached", "sm2_raw", "gm_t0010", "c1c2c3", "asn1"])),
        8 => json!("x".repeat(rng.below(300))),
        9 => Value::Array((0..rng.below(4)).map(|_| random_value(rng, depth + 1)).collect()),
        _ => {
            let mut m = Map::new();
            for _ in 0..rng.below(3) {
                let k = rng.pick(&["data", "stream", "digest", "thumbprint", "der", "device", "id", "x"]);
                m.insert(k.into(), random_value(rng, depth + 1));
            }
            Value::Object(m)
        }
    }
}

/// Replace, remove or add one member somewhere in the tree.
fn mutate_tree(v: &mut Value, rng: &mut Rng, depth: usize) {
    match v {
        Value::Object(m) if !m.is_empty() && (depth == 0 || rng.below(3) != 0) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let k = &keys[rng.below(keys.len())];
            match rng.below(6) {
                0 => {
                    m.remove(k);
                }
                1 => {
                    let name = rng.pick(&["format", "hash", "pin", "extra", "output", "length", "events", "schema_version"]);
                    m.insert(name.into(), random_value(rng, depth));
                }
                2 => {
                    m.insert(k.clone(), random_value(rng, depth));
                }
                _ => mutate_tree(m.get_mut(k).unwrap(), rng, depth + 1),
            }
        }
        Value::Array(a) if !a.is_empty() && rng.below(3) != 0 => {
            let i = rng.below(a.len());
            mutate_tree(&mut a[i], rng, depth + 1);
        }
        other => *other = random_value(rng, depth),
    }
}

#[test]
fn request_parser_never_panics_on_mutated_json() {
    let seeds = mutator::load_seeds(&mutator::seed_dir(env!("CARGO_MANIFEST_DIR"), "bridge_request"));
    let trees: Vec<Value> = seeds.iter().map(|(_, s)| serde_json::from_slice(s).unwrap()).collect();
    let mut rng = Rng::from_name("bridge_request/json");
    let (mut accepted, mut refused) = (0usize, 0usize);
    for i in 0..ITERATIONS {
        let mut tree = trees[i % trees.len()].clone();
        for _ in 0..1 + rng.below(3) {
            mutate_tree(&mut tree, &mut rng, 0);
        }
        let bytes = serde_json::to_vec(&tree).unwrap();
        match std::panic::catch_unwind(|| harness::bridge_request(&bytes)) {
            Ok(true) => accepted += 1,
            Ok(false) => refused += 1,
            Err(_) => panic!("PANIC on iteration {i}: {}", String::from_utf8_lossy(&bytes)),
        }
    }
    // Not vacuous: both outcomes are common.
    assert!(accepted > ITERATIONS / 50 && refused > ITERATIONS / 4, "accepted {accepted}, refused {refused}");
}
