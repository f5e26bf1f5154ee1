use clap::{Parser, Subcommand};
use gren_registry::config::Config;
use std::io::Write;

/// The package registry for the Gren programming language.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    target: gren_registry::client::Target,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    // Boxed: the configuration dwarfs the other commands (clippy::large_enum_variant).
    /// Run the registry's HTTP server.
    // Boxed: the configuration is far larger than the other commands.
    Serve(Box<Config>),
    /// Operator commands on the data directory.
    Admin(gren_registry::admin::AdminArgs),
    #[command(flatten)]
    Client(gren_registry::client::ClientCommand),
}

fn main() {
    let cli = Cli::parse();
    gren_registry::logging::init();
    let result = match cli.command {
        Command::Serve(config) => gren_registry::serve::serve(*config).map(|()| true),
        Command::Admin(args) => gren_registry::admin::run_command(args),
        Command::Client(command) => gren_registry::client::run_command(&cli.target, command)
            .map(|()| true)
            .map_err(Into::into),
    };
    match result {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(err) => {
            // Not eprintln!: a closed or full standard error must not panic.
            let _ = writeln!(std::io::stderr(), "gren-registry: {err}");
            std::process::exit(1);
        }
    }
}
