//! The reader against the real bundles of `tests/fixtures/bundles/` and the
//! golden `docs.json` of `tests/fixtures/docs/`, and the API difference of
//! the real successive versions.

use super::*;
use crate::bundle;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every fixture bundle: its file name without `.pkg.gz`.
fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repository().join("tests/fixtures/bundles"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter_map(|name| name.strip_suffix(".pkg.gz").map(str::to_string))
        .collect();
    names.sort();
    names
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(repository().join(format!("tests/fixtures/bundles/{name}.pkg.gz"))).unwrap()
}

fn docs_of(name: &str) -> Docs {
    of_bundle(&fixture(name), 64 << 20).unwrap_or_else(|err| panic!("{name}: {err}"))
}

/// The names a module's doc comment lists on its `@docs` lines: the
/// compiler refuses to document a module unless they are exactly its
/// exposed names, each once, so they are the oracle the reader's names
/// are checked against (it reads the header's exposing list instead).
fn docs_lines(comment: &str) -> Vec<String> {
    let mut names = Vec::new();
    for part in comment.split("@docs").skip(1) {
        let mut rest = part;
        loop {
            rest = rest.trim_start();
            let end = if rest.starts_with('(') {
                rest.find(')').map_or(rest.len(), |close| close + 1)
            } else {
                rest.find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len())
            };
            if end == 0 {
                break;
            }
            names.push(rest[..end].trim_start_matches('(').trim_end_matches(')').to_string());
            rest = rest[end..].trim_start();
            match rest.strip_prefix(',') {
                Some(after) => rest = after,
                None => break,
            }
        }
    }
    names
}

/// The header of a source: its text up to its doc comment (or first import).
fn header_text(source: &str) -> &str {
    let end = ["\n{-|", "\nimport "]
        .iter()
        .filter_map(|marker| source.find(marker))
        .min();
    &source[..end.unwrap_or(source.len())]
}

#[test]
fn every_exposed_module_of_every_fixture_documents_exactly_its_exposed_names() {
    let mut modules = 0;
    for fixture_name in fixture_names() {
        let bundle = bundle::read(&fixture(&fixture_name), 64 << 20).unwrap();
        let docs = of_sources(&bundle.outline, &bundle.sources).unwrap();
        for (name, module) in &docs.modules {
            let source = &bundle.sources[name];
            let context = format!("{fixture_name} {name}");
            assert_eq!(&module.name, name, "{context}");
            let documented: BTreeSet<&str> = module.names().collect();
            let listed = docs_lines(&module.comment);
            let expected: BTreeSet<&str> = listed.iter().map(String::as_str).collect();
            assert_eq!(documented, expected, "{context}");
            assert_eq!(listed.len(), expected.len(), "{context}: @docs lists a name twice");
            // `(..)` in the header exposes the constructors, and only then.
            let header: String = header_text(source).split_whitespace().collect();
            for union in &module.unions {
                let open = [',', '(']
                    .iter()
                    .any(|before| header.contains(&format!("{before}{}(..)", union.name)));
                assert_eq!(!union.cases.is_empty(), open, "{context} {}", union.name);
            }
            modules += 1;
        }
    }
    assert!(modules > 80, "{modules} modules");
}

/// The modules with a golden `docs.json` under `tests/fixtures/docs/`:
/// (bundle, module). `tests/fixtures/docs/README.md` says how each was
/// checked against its source.
const GOLDEN: [(&str, &str); 7] = [
    ("gren_lang_core__7_0_0", "Basics"),
    ("gren_lang_core__7_0_0", "Maybe"),
    ("gren_lang_core__7_0_0", "Dict"),
    ("gren_lang_core__7_0_0", "Debug"),
    ("gren_lang_core__7_0_0", "Process"),
    ("gren_lang_node__6_1_0", "Terminal"),
    ("gren_lang_url__6_0_0", "Url"),
];

/// Each golden file is the module's entry of `docs.json`, pretty-printed
/// (the fields in the compiler's order) so that it can be read and checked.
/// `GREN_REGISTRY_BLESS=1` rewrites them from the reader: only ever to be
/// checked again by hand before committing.
#[test]
fn golden_modules_match_their_hand_checked_docs() {
    let bless = std::env::var_os("GREN_REGISTRY_BLESS").is_some();
    for (fixture_name, module) in GOLDEN {
        let docs = docs_of(fixture_name);
        let mut text = serde_json::to_string_pretty(&docs.modules[module]).unwrap();
        text.push('\n');
        let path = repository().join(format!("tests/fixtures/docs/{fixture_name}/{module}.json"));
        if bless {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &text).unwrap();
        }
        let golden = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        assert!(
            golden == text,
            "{fixture_name} {module} differs from {}",
            path.display()
        );
    }
}

#[test]
fn docs_json_is_compact_keyed_by_module_with_the_compilers_field_order() {
    let source = concat!(
        "module A exposing (T(..), R, v, (+))\n",
        "{-| A \"doc\"\\ é\n-}\n",
        "infix left 6 (+) = v\n",
        "type T a = C a\n",
        "type alias R = {}\n",
        "v : Int\n",
        "v = 1\n",
    );
    let docs = Docs {
        modules: [
            ("B".to_string(), of_module("B", "module B exposing (..)\n").unwrap()),
            ("A".to_string(), of_module("A", source).unwrap()),
        ]
        .into(),
    };
    let expected = concat!(
        r#"{"A":{"name":"A","comment":" A \"doc\"\\ é\n","#,
        r#""unions":[{"name":"T","comment":"","args":["a"],"cases":[["C",["a"]]]}],"#,
        r#""aliases":[{"name":"R","comment":"","args":[],"type":"{}"}],"#,
        r#""values":[{"name":"v","comment":"","type":"Int"}],"#,
        r#""binops":[{"name":"+","comment":"","type":"Int","associativity":"left","precedence":6}]},"#,
        r#""B":{"name":"B","comment":"","unions":[],"aliases":[],"values":[],"binops":[]}}"#,
    );
    assert_eq!(String::from_utf8(docs.to_json()).unwrap(), expected);
    assert_eq!(Docs::from_json(&docs.to_json()).unwrap(), docs);
}

#[test]
fn a_bundle_whose_exposed_module_is_missing_or_unreadable_has_no_docs() {
    let bundle = bundle::read(&fixture("gren_lang_url__6_0_0"), 64 << 20).unwrap();
    let mut sources = bundle.sources.clone();
    sources.remove("Url.Builder");
    let err = of_sources(&bundle.outline, &sources).unwrap_err();
    assert!(
        matches!(&err, DocsError::MissingModule { module } if module == "Url.Builder"),
        "{err}"
    );
    sources = bundle.sources.clone();
    sources.insert("Url.Builder".into(), "module Url.Other exposing (..)\n".into());
    let err = of_sources(&bundle.outline, &sources).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Url.Builder: the source's header names the module Url.Other."
    );
    let err = of_bundle(b"not gzip", 1 << 20).unwrap_err();
    assert!(matches!(err, DocsError::Bundle(bundle::BundleError::NotGzip)), "{err}");
}
