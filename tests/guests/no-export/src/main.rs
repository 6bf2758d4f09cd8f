//! A WASI command, not an HTTP function: it has no `wasi:http/incoming-handler` export, so the
//! node must refuse it at load with an error that names the missing export.
fn main() {
    println!("i am a command, not a function");
}
