//! Package bundles for tests: the real ones the Gren compiler made
//! (`tests/fixtures/bundles`), variants of them, and synthetic ones.

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::PathBuf;

pub fn real_bundles_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bundles"))
}

/// The file name the compiler gives a bundle: `gren_lang_core__7_0_0.pkg.gz`
/// for `gren-lang/core` 7.0.0 (the registry stores it under that name too).
pub fn bundle_file_name(name: &str, version: &str) -> String {
    format!("{name}__{version}").replace(['-', '.', '/'], "_") + ".pkg.gz"
}

/// The bytes of a real bundle, by file name (`gren_lang_core__7_0_0.pkg.gz`).
pub fn real_bundle(file_name: &str) -> Vec<u8> {
    let path = real_bundles_dir().join(file_name);
    std::fs::read(&path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

/// Every real bundle as (file name, bytes), sorted by name (so versions of a
/// package come in ascending order).
pub fn all_real_bundles() -> Vec<(String, Vec<u8>)> {
    let mut names: Vec<String> = std::fs::read_dir(real_bundles_dir())
        .expect("the test bundles in tests/fixtures/bundles")
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".pkg.gz"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| (name.clone(), real_bundle(&name)))
        .collect()
}

pub fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    GzDecoder::new(bytes).read_to_end(&mut out).expect("a gzip stream");
    out
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// The decoded `{"outline", "sources"}` of a bundle.
pub fn decode(bytes: &[u8]) -> Value {
    serde_json::from_slice(&gunzip(bytes)).expect("bundle JSON")
}

/// Gzip of compact JSON, as the compiler writes bundles.
pub fn encode(bundle: &Value) -> Vec<u8> {
    gzip(&serde_json::to_vec(bundle).unwrap())
}

/// Re-encodes a bundle after `change` edited its JSON.
pub fn rewrite(bytes: &[u8], change: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut bundle = decode(bytes);
    change(&mut bundle);
    encode(&bundle)
}

/// A valid outline for `author/project` at `version`, compiler 0.6, exposing
/// the module `Synthetic`.
fn synthetic_outline(name: &str, version: &str) -> Value {
    json!({
        "type": "package",
        "platform": "common",
        "name": name,
        "summary": "A synthetic package for tests",
        "license": "BSD-3-Clause",
        "version": version,
        "exposed-modules": ["Synthetic"],
        "gren-version": "0.6.0 <= v < 0.7.0",
        "dependencies": { "gren-lang/core": "7.0.0 <= v < 8.0.0" }
    })
}

/// A small valid bundle for `author/project` at `version`, compiler 0.6.
/// `salt` changes the bytes without changing the meaning.
pub fn synthetic(name: &str, version: &str, salt: &str) -> Vec<u8> {
    encode(&json!({
        "outline": synthetic_outline(name, version),
        "sources": { "Synthetic": format!("module Synthetic exposing (salt)\n\nsalt = \"{salt}\"\n") }
    }))
}

/// The worst case for a registry's memory: a valid outline for `name`, then
/// one module whose text is `text_bytes` bytes of `a` (gzip shrinks it about
/// a thousandfold), written to the encoder a chunk at a time.
pub fn inflating(name: &str, text_bytes: usize) -> Vec<u8> {
    inflating_at(name, "1.0.0", text_bytes)
}

/// Like [`inflating`], at `version`.
pub fn inflating_at(name: &str, version: &str, text_bytes: usize) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    let outline = synthetic_outline(name, version);
    write!(encoder, r#"{{"outline":{outline},"sources":{{"Synthetic":""#).unwrap();
    let chunk = vec![b'a'; 1 << 20];
    let mut left = text_bytes;
    while left > 0 {
        let now = left.min(chunk.len());
        encoder.write_all(&chunk[..now]).unwrap();
        left -= now;
    }
    encoder.write_all(br#""}}"#).unwrap();
    encoder.finish().unwrap()
}

/// Lower-case hexadecimal, as the registry writes digests.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The SHA-256 of bytes or text, in hexadecimal.
pub fn sha256_hex(bytes: impl AsRef<[u8]>) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}
