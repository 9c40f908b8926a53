fn main() {
    posthorn_smtp::main();
}
