//! Packs the binary's relative relocations (DT_RELR): a PIE this size carries ~25,000 of
//! them, and the loader reads and applies them on every start, a noticeable part of a
//! short command like `berth checkout`. The binary stays position-independent (ASLR).
fn main() {
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
}
