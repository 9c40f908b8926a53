//! posthorn-auth: see lib.rs and posthorn-auth(8).
fn main() {
    posthorn_auth::main()
}
