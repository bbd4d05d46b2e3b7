//! The `tern` binary: argument parsing and output only.

fn main() {
    println!("tern");
}
