//! `info <author/project>` and `search <words>`: what the registry knows of
//! its packages, read from `GET /packages/<a>/<p>` and `…/latest`, and from
//! the listing `GET /packages`, with the caller's token when there is one (so that their private packages are included) and without a login
//! otherwise.
//! Read only: nothing is written.

use super::remote::RemoteRegistry;
use super::{CliResult, credentials, package_name};
use gren_registry_core::api::{PackageList, PackagePage, VersionAnswer};
use gren_registry_core::package::Version;

/// Prints a package's versions (revoked ones marked, with why), its latest
/// version (for compiler `gren` when given) and that version's summary.
pub fn info(registry: &RemoteRegistry, package: &str, gren: Option<Version>) -> CliResult<()> {
    let package = package_name(package)?;
    let token = credentials::optional_token(&registry.url)?;
    let page: PackagePage = registry.get(&format!("/packages/{package}"), token.as_deref())?;
    println!("{package} ({})", if page.private { "private" } else { "public" });
    println!("versions:");
    for record in page.versions.iter() {
        let about = format!("Gren {}, {}", record.gren_version, record.platform);
        match &record.revoked {
            Some(revoked) => println!("  {} ({about}) revoked: {}", record.version, revoked.reason),
            None => println!("  {} ({about})", record.version),
        }
    }
    let query = gren.map_or(String::new(), |gren| format!("?gren={gren}"));
    let compiler = gren.map_or(String::new(), |gren| format!(" for Gren {gren}"));
    // `404 no_compatible_version` is an answer here, not a failure.
    match registry.try_get::<VersionAnswer>(&format!("/packages/{package}/latest{query}"), token.as_deref()) {
        Ok(latest) => {
            println!("latest{compiler}: {}", latest.version.version);
            println!("summary: {}", latest.version.summary);
        }
        Err(failure) if failure.status == 404 => println!("latest{compiler}: none (no unrevoked version fits)"),
        Err(failure) => return Err(failure.into()),
    }
    Ok(())
}

/// Prints the packages whose name or summary contains every one of `words`
/// (ignoring case). The whole listing is fetched and filtered here: the
/// registry has no search of its own yet.
pub fn search(registry: &RemoteRegistry, words: &[String]) -> CliResult<()> {
    let token = credentials::optional_token(&registry.url)?;
    let listing: PackageList = registry.get("/packages", token.as_deref())?;
    let words: Vec<String> = words.iter().map(|word| word.to_lowercase()).collect();
    let mut found = 0;
    for entry in &listing.packages {
        let text = format!("{} {}", entry.name, entry.summary).to_lowercase();
        if words.iter().all(|word| text.contains(word.as_str())) {
            println!("{} {} {}", entry.name, entry.latest, entry.summary);
            found += 1;
        }
    }
    if found == 0 {
        println!("No package's name or summary contains {}.", words.join(" "));
    }
    Ok(())
}
