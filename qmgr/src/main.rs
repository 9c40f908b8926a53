//! posthorn-qmgr: see lib.rs and posthorn-qmgr(8).
fn main() {
    posthorn_qmgr::main()
}
