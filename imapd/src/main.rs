//! posthorn-imapd: see lib.rs and posthorn-imapd(8).
fn main() {
    posthorn_imapd::main()
}
