//! `gren-registry admin ...`: operator commands working on the data
//! directory directly. They take the data directory's lock like the server,
//! so they refuse to run while a server holds it.

use crate::auth::email::Email;
use crate::identity::{self, Actor, IdentityName};
use crate::store::Store;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct AdminArgs {
    #[arg(long, env = "GREN_REGISTRY_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Manage publishing identities.
    #[command(subcommand)]
    Identity(IdentityCommand),
}

#[derive(Debug, Subcommand)]
pub enum IdentityCommand {
    /// Create an identity, reserved names included.
    Create {
        name: String,
        /// The first admin's e-mail address.
        #[arg(long)]
        admin: String,
    },
}

pub fn run(args: AdminArgs) -> Result<(), Box<dyn std::error::Error>> {
    let store = Store::open(&args.data_dir).map_err(|err| {
        format!("{err}\nStop the server first: admin commands need the data directory to themselves.")
    })?;
    match args.command {
        AdminCommand::Identity(IdentityCommand::Create { name, admin }) => {
            let name = IdentityName::parse(&name).map_err(|err| err.message)?;
            let admin = Email::parse(&admin).map_err(|err| err.message)?;
            let created = identity::create(&store, &name, &admin, &Actor::Operator, &[]).map_err(|err| err.message)?;
            println!("created identity {} with admin {admin}", created.name);
        }
    }
    Ok(())
}
