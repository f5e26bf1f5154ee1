//! Package bundles exactly as the Gren compiler writes them: gzip (one member)
//! of compact UTF-8 JSON `{"outline": <gren.json>, "sources": {"Module": text}}`.
//!
//! Reading is bounded: the inflated size is capped while inflating, so a gzip
//! bomb costs at most the cap.

pub mod outline;

use crate::error::{ApiError, ApiResult};
use flate2::bufread::GzDecoder;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Read;

pub use outline::Outline;

/// A bundle's decoded content.
#[derive(Debug, Deserialize)]
pub struct Bundle {
    pub outline: serde_json::Map<String, serde_json::Value>,
    pub sources: BTreeMap<String, String>,
}

/// Inflates `compressed` (refusing more than `max_inflated` bytes) and parses
/// the bundle JSON.
pub fn read(compressed: &[u8], max_inflated: u64) -> ApiResult<Bundle> {
    let mut decoder = GzDecoder::new(compressed);
    let mut json = Vec::new();
    decoder
        .by_ref()
        .take(max_inflated + 1)
        .read_to_end(&mut json)
        .map_err(|err| invalid(format!("The body is not a complete gzip stream: {err}.")))?;
    if json.len() as u64 > max_inflated {
        return Err(ApiError::new(
            413,
            "bundle_too_large",
            format!("The bundle inflates to more than {max_inflated} bytes."),
        ));
    }
    if decoder.header().is_none() {
        return Err(invalid("The body is not gzip data.".into()));
    }
    if !decoder.into_inner().is_empty() {
        return Err(invalid("The body has data after the end of its gzip stream.".into()));
    }
    let text = std::str::from_utf8(&json).map_err(|err| invalid(format!("The bundle is not UTF-8: {err}.")))?;
    serde_json::from_str(text).map_err(|err| {
        invalid(format!(
            "The bundle is not {{\"outline\": {{...}}, \"sources\": {{\"Module.Name\": \"text\"}}}}: {err}."
        ))
    })
}

fn invalid(message: String) -> ApiError {
    ApiError::bad_request("invalid_bundle", message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn reads_a_minimal_bundle() {
        let bundle = read(
            &gzip(br#"{"outline":{"type":"package"},"sources":{"A":"module A"}}"#),
            1000,
        )
        .unwrap();
        assert_eq!(bundle.sources["A"], "module A");
    }

    #[test]
    fn refuses_bad_gzip_and_bad_json() {
        let good = gzip(br#"{"outline":{},"sources":{}}"#);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"not gzip".to_vec(), "invalid_bundle"),
            (good[..good.len() - 4].to_vec(), "invalid_bundle"),
            ([good.clone(), b"junk".to_vec()].concat(), "invalid_bundle"),
            (gzip(b"\xff\xfe{}"), "invalid_bundle"),
            (gzip(br#"{"outline":{}}"#), "invalid_bundle"),
            (gzip(br#"{"outline":{},"sources":{"A":1}}"#), "invalid_bundle"),
            (gzip(br#"[]"#), "invalid_bundle"),
        ];
        for (index, (body, code)) in cases.into_iter().enumerate() {
            match read(&body, 1 << 20) {
                Ok(_) => panic!("case {index} was accepted"),
                Err(err) => assert_eq!(err.code, code, "case {index}"),
            }
        }
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_cap() {
        let bomb = gzip(&vec![b' '; 50 << 20]);
        assert!(bomb.len() < 100 << 10, "50 MiB of spaces compresses well");
        let err = read(&bomb, 1 << 20).unwrap_err();
        assert_eq!((err.status, err.code), (413, "bundle_too_large"));
    }
}
