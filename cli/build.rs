//! Links `berth` as a position-dependent executable: a PIE makes the dynamic loader
//! patch ~25,000 relative relocations, touching (and copying) hundreds of pages on every
//! start, which is most of a short command's run time (`berth checkout` takes ~10 ms).
fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
