//! Entry points of the fuzz targets in `fuzz/`. The regression test
//! `tests/integration/fuzz_regressions.rs` replays every saved input through the same
//! functions on stable Rust, so a crash once found stays fixed.

use crate::http::router;
use crate::http::server::{Limits, parse_head};
use gren_registry_core::bundle::{self, outline};
use gren_registry_core::package::{Range, Version};

/// The bundle reader and validator: never panics, whatever the bytes, and
/// the streaming check of a publish accepts exactly what reading the whole
/// bundle and validating it accepts, with the same outline.
pub fn bundle(data: &[u8]) {
    let read =
        bundle::read(data, 1 << 20).and_then(|bundle| outline::validate(&bundle, outline::KernelCode::AnyAuthor));
    let checked = bundle::check(data, 1 << 20, outline::KernelCode::AnyAuthor, |_| {
        Ok::<(), bundle::BundleError>(())
    })
    .map(|checked| checked.outline);
    assert_eq!(read.ok(), checked.ok(), "read + validate and check disagree");
}

/// Versions and ranges: whatever parses prints back to itself.
pub fn version_range(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some(version) = Version::parse(text) {
        assert_eq!(Version::parse(&version.to_string()), Some(version));
    }
    if let Some(range) = Range::parse(text) {
        assert!(range.lower < range.upper);
        assert_eq!(Range::parse(&range.to_string()), Some(range));
    }
    let versions: Vec<Version> = text.split_whitespace().filter_map(Version::parse).collect();
    for next in Version::successors(&versions) {
        assert!(!versions.contains(&next), "a successor is never a taken version");
    }
}

/// The request head parser and the routing table: a path the table knows
/// is found for each method it allows and is `405` for the others; any
/// other path is `404`.
pub fn router(data: &[u8]) {
    if let Ok(Some(head)) = parse_head(data, &Limits::default()) {
        assert!(head.length <= data.len());
        let path = head.target.split('?').next().unwrap_or_default();
        let refused = router::find(&head.method, path).err().map(|err| err.status);
        match router::allowed_methods(path) {
            Some(methods) => {
                assert!(!methods.is_empty());
                for method in &methods {
                    assert!(router::find(method, path).is_ok(), "{method} {path}");
                }
                let allowed = methods.contains(&head.method.as_str());
                assert_eq!(refused, (!allowed).then_some(405), "{} {path}", head.method);
            }
            None => assert_eq!(refused, Some(404), "{} {path}", head.method),
        }
    }
}
