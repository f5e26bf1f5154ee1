//! The entry point of the `docs` fuzz target (`fuzz/fuzz_targets/docs.rs`).
//! A unit test replays every input saved under `fuzz/regressions/docs/`
//! through it, so a crash found once stays fixed.

use super::{Docs, Magnitude, diff, of_module};

/// The reader, on any bytes as a module's source (and again after a header
/// exposing everything, to reach the declarations): it never panics, what
/// it reads is in name order, each name once, within its size bound,
/// survives `docs.json` unchanged, and differs from itself in nothing.
pub fn reader(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    check(&text);
    check(&format!("module M exposing (..)\n{text}"));
}

fn check(source: &str) {
    let Ok(module) = of_module("M", source) else {
        return;
    };
    assert_in_order(module.unions.iter().map(|union| &union.name));
    assert_in_order(module.aliases.iter().map(|alias| &alias.name));
    assert_in_order(module.values.iter().map(|value| &value.name));
    assert_in_order(module.binops.iter().map(|binop| &binop.name));
    let docs = Docs {
        modules: [("M".to_string(), module)].into(),
    };
    let json = docs.to_json();
    // Escaping at most sextuples the copied text (itself bounded), and a
    // declaration of n bytes adds less than 18n bytes of JSON around it.
    assert!(
        json.len() <= 32 * source.len() + 8 * super::MAX_DOCS_SLACK,
        "the documentation is bounded by the source"
    );
    assert_eq!(Docs::from_json(&json).expect("docs.json reads back"), docs);
    let same = diff(&docs, &docs);
    assert_eq!(same.magnitude, Magnitude::Patch);
    assert!(same.changed.is_empty() && same.warnings.is_empty());
}

fn assert_in_order<'a>(names: impl Iterator<Item = &'a String>) {
    let names: Vec<&String> = names.collect();
    assert!(names.windows(2).all(|pair| pair[0] < pair[1]), "{names:?}");
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_saved_fuzz_input_reads_without_a_crash() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/docs");
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| super::reader(&data));
            assert!(outcome.is_ok(), "{} crashes the docs target", path.display());
            count += 1;
        }
        assert!(count > 0, "{} holds no inputs", dir.display());
    }

    #[test]
    fn the_seeds_reach_the_declarations() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/docs");
        let seed = std::fs::read_to_string(dir.join("seed-declarations")).unwrap();
        let docs = super::of_module("M", &seed).unwrap();
        assert_eq!(docs.names().count(), 6);
        assert_eq!(docs.unions[1].cases.len(), 3);
    }
}
