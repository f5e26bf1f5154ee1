use clap::error::ErrorKind;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use gren_registry_client::{ClientCommand, Target};
use gren_registry_http::config::Config;
use std::io::Write;
use std::process::ExitCode;

/// The package registry for the Gren programming language.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// The registry the client commands talk to (also taken after the command).
    #[arg(long, value_name = "URL")]
    registry: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry's HTTP server.
    // Boxed: the configuration is far larger than the other commands (clippy::large_enum_variant).
    Serve(Box<Config>),
    /// Operator commands on the data directory.
    Admin(gren_registry_admin::AdminArgs),
    /// Print a shell completion script for this program (to stdout).
    ///
    /// Generated from the same definitions as `--help`, so it always offers
    /// this release's commands and options. For example:
    /// `gren-registry completions bash > /etc/bash_completion.d/gren-registry`,
    /// `gren-registry completions zsh > ~/.zfunc/_gren-registry` (with
    /// `~/.zfunc` in `fpath`), or
    /// `gren-registry completions fish > ~/.config/fish/completions/gren-registry.fish`.
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
    #[command(flatten)]
    Client(ClientCommand),
}

/// The command line: the client's options ([`Target`]) belong to each client
/// command, and not to `serve` or `admin`, which talk to no registry.
fn command_line() -> clap::Command {
    let client = ClientCommand::augment_subcommands(clap::Command::new("client"));
    client.get_subcommands().fold(Cli::command(), |cli, command| {
        cli.mut_subcommand(command.get_name(), Target::augment_args)
    })
}

/// The parsed command line, and the client's options for a client command.
fn parse() -> (Cli, Option<Target>) {
    let matches = command_line().get_matches();
    let parsed = Cli::from_arg_matches(&matches).and_then(|cli| {
        let target = match &cli.command {
            Command::Client(_) => {
                let (_, command) = matches.subcommand().expect("a command was given");
                Some(Target::from_arg_matches(command)?)
            }
            Command::Serve(_) | Command::Admin(_) | Command::Completions { .. } => None,
        };
        Ok((cli, target))
    });
    let (cli, mut target) = parsed.unwrap_or_else(|err| err.format(&mut command_line()).exit());
    match (&cli.registry, &mut target) {
        // Named before the command, it wins over GREN_REGISTRY_URL.
        (Some(registry), Some(target)) => target.registry = Some(registry.clone()),
        (Some(_), None) => command_line()
            .error(
                ErrorKind::ArgumentConflict,
                "--registry is an option of the client commands; `serve`, `admin` and `completions` do not take it",
            )
            .exit(),
        (None, _) => {}
    }
    (cli, target)
}

/// Writes the completion script of `shell` for the whole command line (the
/// client's options included) to stdout.
fn completions(shell: clap_complete::Shell) -> Result<(), Box<dyn std::error::Error>> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command_line(), "gren-registry", &mut script);
    match std::io::stdout().write_all(&script) {
        // `completions bash | head`: the reader had enough.
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        done => Ok(done?),
    }
}

fn main() -> ExitCode {
    let (cli, target) = parse();
    gren_registry_core::logging::init();
    let result = match cli.command {
        // The running server carries out admin commands sent to its control socket.
        Command::Serve(config) => {
            gren_registry_http::serve::serve(*config, Some(Box::new(gren_registry_admin::control::answer)))
                .map(|()| true)
        }
        Command::Admin(args) => gren_registry_admin::run_command(args),
        Command::Completions { shell } => completions(shell).map(|()| true),
        Command::Client(command) => {
            let target = target.expect("client commands have a target");
            gren_registry_client::run_command(&target, command)
                .map(|()| true)
                .map_err(Into::into)
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            // Not eprintln!: a closed or full standard error must not panic.
            let _ = writeln!(std::io::stderr(), "gren-registry: {err}");
            ExitCode::FAILURE
        }
    }
}
