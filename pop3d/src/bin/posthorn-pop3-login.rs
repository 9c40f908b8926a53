//! posthorn-pop3-login: the POP3 login process, as its own program for the
//! package's daemon_directory (the multi-call `posthorn` runs it too); see
//! login_server.rs and posthorn-pop3-login(8).
fn main() {
    posthorn_pop3d::login_main()
}
