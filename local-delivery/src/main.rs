//! posthorn-local: see lib.rs and posthorn-local(8).
fn main() {
    posthorn_local::main()
}
