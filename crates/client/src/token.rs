//! `gren-registry token create|list|revoke`: a person's automation tokens.
//! `create` writes the secret, and nothing else, to stdout, so it can be
//! piped into a CI secret store; what else there is to say goes to stderr.

use super::credentials;
use super::remote::RemoteRegistry;
use super::{CliError, CliResult};
use clap::Subcommand;
use gren_registry_core::api::{TokenCreated, TokenList, TokenRequest};
use std::io::Write;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; prints its secret (only) on stdout, this once.
    Create {
        /// A name to know it by (unique among your tokens).
        #[arg(long)]
        name: String,
        /// publish:<identity>/<project or *>, revoke:<identity>/<project or *>
        /// or download:<identity>; repeat for more.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Days until it expires (1 to 365).
        #[arg(long)]
        expires_in_days: u64,
    },
    /// List your tokens (never their secrets).
    List,
    /// Revoke a token by its id: it stops working at once.
    Revoke {
        /// The token's id, as `token list` shows it.
        id: String,
    },
}

pub fn run(registry: &RemoteRegistry, command: TokenCommand) -> CliResult<()> {
    let session = credentials::token_for(&registry.url)?;
    match command {
        TokenCommand::Create {
            name,
            scopes,
            expires_in_days,
        } => {
            let body = TokenRequest {
                name,
                scopes,
                expires_in_days,
            };
            let created: TokenCreated = registry.post("/user/tokens", &body, Some(&session))?;
            eprintln!(
                "Created the token {} (id {}), expiring {}; it is shown only this once.",
                created.view.name, created.view.id, created.view.expires
            );
            // Only the secret: `gren-registry token create … | gh secret set …`.
            writeln!(std::io::stdout(), "{}", created.token)
                .map_err(|err| CliError(format!("Cannot write the token: {err}")))
        }
        TokenCommand::List => {
            let list: TokenList = registry.get("/user/tokens", Some(&session))?;
            if list.tokens.is_empty() {
                println!("You have no automation tokens.");
            }
            for token in &list.tokens {
                let used = token
                    .last_used
                    .map_or("never used".to_string(), |at| format!("last used {at}"));
                let scopes: Vec<String> = token.scopes.iter().map(ToString::to_string).collect();
                println!(
                    "{} {} [{}] created {}, expires {}, {used}",
                    token.id,
                    token.name,
                    scopes.join(" "),
                    token.created,
                    token.expires
                );
            }
            Ok(())
        }
        TokenCommand::Revoke { id } => {
            // An id is what `token list` shows: 16 hex digits. Anything else
            // would make another path, and a misleading answer.
            if !gren_registry_core::auth::token::is_token_id(&id) {
                return Err(CliError(format!(
                    "{id:?} is not a token id: `gren-registry token list` shows them (16 lower-case hex digits)."
                )));
            }
            registry.delete(&format!("/user/tokens/{id}"), Some(&session))?;
            println!("Revoked the token {id}");
            Ok(())
        }
    }
}
