//! Links the `berth` executable as non-PIE. The binary is also the per-container shim, one
//! process per running container: as a PIE, the dynamic loader patches ~700 KiB of
//! relocated read-only data (vtables, string tables) in every process, private memory each
//! shim pays again. A fixed-address executable has those pages clean and shared.
fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
    println!("cargo:rerun-if-changed=build.rs");
}
