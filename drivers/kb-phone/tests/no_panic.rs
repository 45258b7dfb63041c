//! The message decoder never panics, whatever a peer sends.
//!
//! The libFuzzer target's harness body (`tests/fuzz/src/phone.rs`, which also checks that
//! a decoded message passes its own caps and round-trips) is fed the committed seeds
//! (`tests/fuzz/seeds/phone_message/`, the examples of docs/phone-link-messages.md), which
//! must all decode, then 5,000 byte-level mutations of them (`tests/fuzz/src/mutator.rs`)
//! and 5,000 structural JSON mutations (values swapped for other JSON values, members
//! added or removed), which reach the typed fields and the caps far more often.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(unreachable_pub, dead_code)]
#[path = "../../../tests/fuzz/src/phone.rs"]
mod harness;
#[allow(unreachable_pub, dead_code)]
#[path = "../../../tests/fuzz/src/mutator.rs"]
mod mutator;

use mutator::Rng;
use serde_json::{Map, Value, json};

const ITERATIONS: usize = 5_000;

#[test]
fn message_decoder_never_panics_on_mutated_bytes() {
    mutator::run(env!("CARGO_MANIFEST_DIR"), "phone_message", harness::phone_message, ITERATIONS);
}

fn random_value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth > 2 { 10 } else { 13 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 => json!(rng.next_u64() as i64),
        3 => json!(rng.pick(&[0i64, -1, 1, 2, 17, 4001, 6051, 9_007_199_254_740_991, 9_007_199_254_740_992, i64::MAX])),
        4 => json!(rng.pick(&[0.5f64, -1e300, 1e-9])),
        5 => {
            json!(rng.pick(&["", "sm2", "sign", "encrypt", "both", "sm3", "sha256", "md5", "aGk=", "===", "张三", "a\u{202e}b"]))
        }
        6 => json!("0bf474896363505e5ea5e5d6ace8ebfb13a760a409b1fb467d428fc716f9f284"),
        7 => json!(rng.pick(&["sm2_sm3", "rsa_pss", "ecdsa", "pkcs1v15", "oaep", "user_refused", "aborted", "pin_locked"])),
        8 => json!("x".repeat(rng.below(700))),
        9 => json!("QUJD".repeat(rng.below(400))),
        10 => Value::Array((0..rng.below(4)).map(|_| random_value(rng, depth + 1)).collect()),
        _ => {
            let mut m = Map::new();
            for _ in 0..rng.below(3) {
                let k = rng.pick(&["kind", "hash", "id", "rsa", "bits", "name", "sign", "decrypt", "x"]);
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
                    let name = rng.pick(&["type", "id", "note", "digest", "scheme", "media", "protocol", "extra"]);
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
            if rng.below(4) == 0 {
                let copy = a[i].clone();
                a.push(copy); // duplicates: two media or containers with the same id
            } else {
                mutate_tree(&mut a[i], rng, depth + 1);
            }
        }
        other => *other = random_value(rng, depth),
    }
}

#[test]
fn message_decoder_never_panics_on_mutated_json() {
    let seeds = mutator::load_seeds(&mutator::seed_dir(env!("CARGO_MANIFEST_DIR"), "phone_message"));
    let trees: Vec<Value> = seeds.iter().map(|(_, s)| serde_json::from_slice(s).unwrap()).collect();
    let mut rng = Rng::from_name("phone_message/json");
    let (mut accepted, mut refused) = (0usize, 0usize);
    for i in 0..ITERATIONS {
        let mut tree = trees[i % trees.len()].clone();
        for _ in 0..1 + rng.below(3) {
            mutate_tree(&mut tree, &mut rng, 0);
        }
        let bytes = serde_json::to_vec(&tree).unwrap();
        match std::panic::catch_unwind(|| harness::phone_message(&bytes)) {
            Ok(true) => accepted += 1,
            Ok(false) => refused += 1,
            Err(_) => panic!("PANIC on iteration {i}: {}", String::from_utf8_lossy(&bytes)),
        }
    }
    // Not vacuous: both outcomes are common.
    assert!(accepted > ITERATIONS / 50 && refused > ITERATIONS / 4, "accepted {accepted}, refused {refused}");
}
