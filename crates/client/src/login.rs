//! `login` and `logout`.
//!
//! Login starts an e-mail login, shows the verification phrase, then waits
//! for whichever comes first: the magic link confirmed in a browser (a
//! long-poll in the background) or the code typed at the terminal.

use super::credentials::{self, Entry};
use super::remote::RemoteRegistry;
use super::{CliError, CliResult};
use gren_registry_core::api::{LoginRequest, LoginStarted, UserAnswer};
use gren_registry_core::error::ErrorCode;
use std::io::{BufRead, Write};
use std::sync::mpsc;

enum Event {
    Typed(String),
    Token(String),
    Failed(String),
    StdinClosed,
}

pub fn log_in(registry: &RemoteRegistry, email: Option<String>) -> CliResult<()> {
    let email = match email {
        Some(email) => email,
        None => prompt("E-mail address: ")?,
    };
    let body = LoginRequest { email: email.clone() };
    let started: LoginStarted = registry.post("/session", &body, None)?;
    let fetch_token = started.fetch_session_token;
    println!("We sent an e-mail to {email}.");
    println!("It should show the verification phrase: {}", started.verification);
    println!("Type the code from the e-mail, or open its link and confirm.");

    let (events, waiting) = mpsc::channel();
    {
        let events = events.clone();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                if !line.trim().is_empty() && events.send(Event::Typed(line)).is_err() {
                    return;
                }
            }
            let _ = events.send(Event::StdinClosed);
        });
    }
    {
        let (registry, fetch_token) = (RemoteRegistry::new(&registry.url), fetch_token.clone());
        std::thread::spawn(move || {
            loop {
                let asked = std::time::Instant::now();
                let event = match registry.fetch_session(&fetch_token, None, 20) {
                    Ok(None) => {
                        // A busy registry answers at once instead of waiting: do not hammer it.
                        if asked.elapsed() < std::time::Duration::from_secs(1) {
                            std::thread::sleep(std::time::Duration::from_secs(2));
                        }
                        continue;
                    }
                    Ok(Some(token)) => Event::Token(token),
                    Err(failure) => Event::Failed(failure.message),
                };
                let _ = events.send(event);
                return;
            }
        });
    }
    let token = loop {
        match waiting.recv() {
            Ok(Event::Typed(code)) => match registry.fetch_session(&fetch_token, Some(&code), 0) {
                Ok(Some(token)) => break token,
                Ok(None) => continue,
                Err(failure)
                    if failure.code == ErrorCode::InvalidCode.as_str() && !ends_the_login(&failure.message) =>
                {
                    println!("{} Type it again:", failure.message);
                }
                Err(failure) => return Err(start_again(&registry.url, &failure.message)),
            },
            Ok(Event::Token(token)) => break token,
            Ok(Event::Failed(message)) => return Err(start_again(&registry.url, &message)),
            Ok(Event::StdinClosed) => continue,
            Err(_) => return Err(CliError("The login was interrupted.".into())),
        }
    };
    let user: UserAnswer = registry.get("/user", Some(&token))?;
    let email = user.email.to_string();
    credentials::remember(Entry {
        registry: registry.url.clone(),
        email: email.clone(),
        token,
    })?;
    println!("Logged in to {} as {email}.", registry.url);
    Ok(())
}

pub fn logout(registry: &RemoteRegistry) -> CliResult<()> {
    let Some(entry) = credentials::stored(&registry.url)? else {
        println!("You were not logged in to {}.", registry.url);
        return Ok(());
    };
    match registry.delete("/session", Some(&entry.token)) {
        // Already revoked or expired: forgetting it is all that is left to do.
        Ok(_) => {}
        Err(failure) if failure.status == 401 => {}
        Err(failure) => return Err(failure.into()),
    }
    credentials::forget(&registry.url)?;
    println!("Logged out of {}.", registry.url);
    Ok(())
}

/// The registry's sentence for a login that cannot go on ("…; start a new
/// login.", the last wrong code included).
fn ends_the_login(message: &str) -> bool {
    message.ends_with("start a new login.")
}

/// A failed login: the registry's "start a new login" made the command to
/// run again; any other failure already says what to do.
fn start_again(registry: &str, message: &str) -> CliError {
    CliError(match message.strip_suffix("start a new login.") {
        Some(what) => format!("{what}run `{}` again.", crate::registry::command(registry, "login")),
        None => message.to_string(),
    })
}

fn prompt(question: &str) -> CliResult<String> {
    print!("{question}");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|err| CliError(err.to_string()))?;
    let answer = answer.trim().to_string();
    if answer.is_empty() {
        return Err(CliError("No e-mail address given; use --email or type one.".into()));
    }
    Ok(answer)
}
