//! posthorn-anvil: see lib.rs and posthorn-anvil(8).
fn main() {
    posthorn_anvil::main()
}
