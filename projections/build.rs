// `sqlx::migrate!` embeds migrations/ at compile time, but on stable Rust it cannot tell cargo
// to watch that folder: without this, a new migration file is silently left out of the binary.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
