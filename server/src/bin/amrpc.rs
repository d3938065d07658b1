//! `amrpc`: run a server with demo workers, or a REPL against one.
fn main() {
    println!("amrpc: not yet");
}
