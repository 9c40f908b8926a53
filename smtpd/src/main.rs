//! posthorn-smtpd: see lib.rs and posthorn-smtpd(8).
fn main() {
    posthorn_smtpd::main()
}
