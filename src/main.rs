//! `gpu-train`: a thin shell over the library; see `gpu-train --help`.

mod args;
mod cli;
mod terminal;

fn main() {
    match cli::main_with_args() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
