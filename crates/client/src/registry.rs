//! Which registry a client command talks to, and whether its URL can be a
//! registry's. `--registry` wins, then `GREN_REGISTRY_URL` (clap reads both
//! into [`Target`](crate::Target)), then the most recent login's registry
//! (`~/.gren/user`, see [`credentials`]), then [`DEFAULT_REGISTRY`]. The URL
//! is checked before any request, so that a mistyped one is named as a URL
//! problem rather than as a registry that cannot be reached.

use super::{CliError, CliResult, credentials};
use gren_registry_core::api::{DEFAULT_REGISTRY, client_command};

/// The first path segments of the registry's routes: a URL whose path
/// holds one names something under a registry, not the registry (the
/// server's router lists the routes; a registry may sit under a path
/// prefix, which holds none of these).
const ROUTE_ROOTS: &[&str] = &[
    "events",
    "git",
    "github",
    "health",
    "packages",
    "publishing-identity",
    "session",
    "user",
    "users",
];

/// The registry for a command given `named` (`--registry` or
/// `GREN_REGISTRY_URL`), checked, without a trailing slash.
pub fn choose(named: Option<&str>) -> CliResult<String> {
    match named {
        Some(url) => check(url),
        None => implicit(),
    }
}

/// The registry a command given no `--registry` talks to.
fn implicit() -> CliResult<String> {
    if let Some(url) = std::env::var("GREN_REGISTRY_URL").ok().filter(|url| !url.is_empty()) {
        return check(&url);
    }
    Ok(credentials::default_registry()?.unwrap_or_else(|| DEFAULT_REGISTRY.to_string()))
}

/// A command to show the person at this terminal: it names `registry` when
/// the same command without `--registry` would talk to another one.
pub fn command(registry: &str, words: &str) -> String {
    let without_flag = implicit().unwrap_or_else(|_| DEFAULT_REGISTRY.to_string());
    if without_flag == registry {
        format!("gren-registry {words}")
    } else {
        format!("gren-registry {words} --registry {registry}")
    }
}

/// A command to show someone else, who may have logged in elsewhere: it
/// names `registry` unless it is the default.
pub fn command_for_others(registry: &str, words: &str) -> String {
    client_command(registry, words)
}

/// `url` if it can be a registry's (http or https, a host, no query, no
/// path under a registry's routes), without its trailing slash.
pub fn check(url: &str) -> CliResult<String> {
    if url.trim().is_empty() {
        return Err(CliError(
            "The registry URL is empty (--registry or GREN_REGISTRY_URL): give one, such as https://registry.example.com, or unset it."
                .into(),
        ));
    }
    let refused = |why: String| CliError(format!("{url:?} is not a registry URL: {why}"));
    let Some((scheme, rest)) = url.split_once("://") else {
        let guess = url.trim_start_matches('/');
        return Err(refused(format!(
            "it has no scheme. Give it with one, such as https://{guess} (or http:// for a registry without TLS)."
        )));
    };
    if !matches!(scheme, "http" | "https") {
        return Err(refused(format!(
            "{scheme}:// is not a way to reach a registry. Use https:// (or http:// for one without TLS)."
        )));
    }
    if rest.is_empty() || rest.starts_with(['/', '?', '#']) {
        return Err(refused("it has no host. Give it as https://host[:port].".into()));
    }
    let parsed = url
        .parse::<ureq::http::Uri>()
        .map_err(|err| refused(format!("{err}. Give it as https://host[:port].")))?;
    let Some(host) = parsed.host().filter(|host| !host.is_empty()) else {
        return Err(refused("it has no host. Give it as https://host[:port].".into()));
    };
    let authority = parsed.authority().map_or(host, |authority| authority.as_str());
    if authority.ends_with(':') {
        return Err(refused("its port is empty. Give it as https://host[:port].".into()));
    }
    if url.contains(['?', '#']) {
        return Err(refused(
            "a registry URL has no query or fragment. Leave out what follows ? or #.".into(),
        ));
    }
    let path = parsed.path().trim_end_matches('/');
    let mut segments = path.split('/');
    if let Some(at) = segments.position(|segment| ROUTE_ROOTS.contains(&segment)) {
        let prefix: Vec<&str> = path.split('/').take(at).collect();
        let base = format!("{scheme}://{authority}{}", prefix.join("/"));
        return Err(refused(format!(
            "it names something under the registry at {base}. Give the registry's own URL: --registry {base}."
        )));
    }
    Ok(format!("{scheme}://{rest}").trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_urls_keep_their_scheme_host_port_and_prefix_without_a_trailing_slash() {
        for (given, kept) in [
            ("http://127.0.0.1:3000", "http://127.0.0.1:3000"),
            ("https://registry.gren-lang.org/", "https://registry.gren-lang.org"),
            (
                "https://example.org/gren/registry/",
                "https://example.org/gren/registry",
            ),
            ("http://[::1]:4000", "http://[::1]:4000"),
        ] {
            assert_eq!(check(given).unwrap(), kept);
        }
    }

    #[test]
    fn a_url_that_cannot_be_a_registrys_is_named_as_a_url_problem_with_one_fix() {
        for (given, says) in [
            (
                "registry.gren-lang.org",
                "it has no scheme. Give it with one, such as https://registry.gren-lang.org",
            ),
            ("127.0.0.1:3000", "it has no scheme"),
            (
                "ftp://registry.gren-lang.org",
                "ftp:// is not a way to reach a registry. Use https://",
            ),
            ("https://", "no host"),
            ("https://r.example/?x=1", "no query or fragment"),
            ("http://127.0.0.1:", "its port is empty"),
            ("", "The registry URL is empty"),
            (
                "https://r.example/packages/gren-lang/core",
                "it names something under the registry at https://r.example. Give the registry's own URL: --registry https://r.example.",
            ),
            (
                "http://127.0.0.1:3000/prefix/user/tokens",
                "under the registry at http://127.0.0.1:3000/prefix.",
            ),
        ] {
            let err = check(given).unwrap_err().0;
            let named = given.is_empty() || err.starts_with(&format!("{given:?} is not a registry URL: "));
            assert!(named && err.contains(says), "{given}: {err}");
        }
    }
}
