//! posthorn-master: see lib.rs and posthorn-master(8).
fn main() {
    std::process::exit(posthorn_master::main_with_args(
        std::env::args().skip(1).collect(),
    ))
}
