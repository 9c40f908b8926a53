//! The postdrop binary (installed setgid postdrop): see the library's header.

fn main() {
    postdrop::main()
}
