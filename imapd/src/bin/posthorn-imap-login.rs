//! posthorn-imap-login: the IMAP login process; see login_server.rs.
fn main() {
    posthorn_imapd::login_main()
}
