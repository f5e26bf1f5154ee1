//! Replays every input saved under fuzz/regressions/<target>/ through the
//! fuzz target's function, so a crash found once by `fuzz/run` stays fixed.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{} crashes the {target} target", path.display());
        count += 1;
    }
    assert!(count > 0, "{} holds no inputs", dir.display());
}

#[test]
fn bundle_inputs() {
    replay("bundle", gren_registry_http::fuzzing::bundle);
}

#[test]
fn version_range_inputs() {
    replay("version_range", gren_registry_http::fuzzing::version_range);
}

#[test]
fn router_inputs() {
    replay("router", gren_registry_http::fuzzing::router);
}
