//! posthorn-pop3d: see lib.rs and posthorn-pop3d(8).
fn main() {
    posthorn_pop3d::main()
}
