//! Prints docs/error-codes.md from the code table.
#![allow(clippy::print_stdout)]
fn main() {
    println!("# KeyBridge error codes\n");
    println!("Generated from `drivers/kb-types/src/error_code.rs` by");
    println!("`cargo run -p kb-types --example error_table > docs/error-codes.md`; a test fails when it drifts.");
    println!("Numbers never change meaning; new codes are appended. Clients match on the number or name, never the message.\n");
    print!("{}", kb_types::markdown_table());
}
