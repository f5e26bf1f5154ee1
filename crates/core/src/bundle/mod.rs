//! Package bundles exactly as the Gren compiler writes them: gzip (one member)
//! of compact UTF-8 JSON `{"outline": <gren.json>, "sources": {"Module": text}}`.
//!
//! Reading streams the JSON out of the gzip decoder: the inflated text is
//! never held whole, and what is kept of it is bounded.
//!
//! - The inflated size is capped while inflating ([`BundleError::TooLarge`]), so
//!   a gzip bomb costs at most the time to inflate the cap.
//! - The outline must come first, as the compiler writes it, and is read on
//!   its own (at most [`MAX_OUTLINE_BYTES`]): a publish is refused from its
//!   outline (name, owner, role) before a byte of the sources is inflated.
//! - A key repeated anywhere is refused, with its path ([`crate::json`]): a
//!   reader keeping the last value would validate one document while the
//!   registry serves another whose first value differs.
//! - Members other than `outline` and `sources` are refused, module names
//!   longer than 255 bytes are refused before they are copied, and a bundle
//!   has at most [`MAX_MODULES`] modules. Publishing ([`check`]) keeps no
//!   source text at all.

mod error;
pub mod outline;
pub mod project;

use crate::json::{Path, Strict};
use flate2::bufread::GzDecoder;
use serde::de::{self, DeserializeSeed, Deserializer as _, MapAccess, Visitor};
use serde_json::{Map, Value};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io::{BufReader, Read};

pub use error::BundleError;
pub use outline::Outline;

/// The largest outline (`gren.json`) read; the compiler's are a few hundred bytes.
pub const MAX_OUTLINE_BYTES: u64 = 256 * 1024;
/// The most modules a bundle may have (the largest real packages have dozens).
pub const MAX_MODULES: usize = 10_000;
/// Module names are shorter than 256 bytes (the compiler's rule).
const MAX_MODULE_NAME: usize = 255;
/// Inflated bytes read ahead of the JSON parser.
const READ_AHEAD: usize = 16 * 1024;

/// A bundle's decoded content, sources included (for the client).
#[derive(Debug)]
pub struct Bundle {
    pub outline: Map<String, Value>,
    pub sources: BTreeMap<String, String>,
}

/// A bundle checked for publishing: its outline as uploaded and validated;
/// the sources were checked against it and not kept.
#[derive(Debug)]
pub struct Checked {
    pub manifest: Map<String, Value>,
    pub outline: Outline,
}

/// Inflates `compressed` (refusing more than `max_inflated` bytes) and parses
/// the whole bundle, strictly; the outline is not validated.
pub fn read(compressed: &[u8], max_inflated: u64) -> Result<Bundle, BundleError> {
    let mut collected = Collect::default();
    parse(compressed, max_inflated, &mut collected)?;
    Ok(Bundle {
        outline: collected.outline.unwrap_or_default(),
        sources: collected.sources,
    })
}

/// Validates a bundle for publishing without keeping its text: the outline is
/// read and validated first, then `authorize` decides whether the caller may
/// publish it (an error stops reading there), then every module is checked
/// against the outline as it streams past. `authorize`'s refusal is
/// returned as it is; the bundle's own faults become the caller's error type.
pub fn check<E: From<BundleError>>(
    compressed: &[u8],
    max_inflated: u64,
    kernel: outline::KernelCode,
    authorize: impl FnOnce(&Outline) -> Result<(), E>,
) -> Result<Checked, E> {
    let mut checker = Checker {
        authorize: Some(authorize),
        kernel,
        read: None,
    };
    parse(compressed, max_inflated, &mut checker)?;
    let (manifest, outline, sources) = checker.read.expect("a parsed bundle has an outline");
    sources.finish()?;
    Ok(Checked { manifest, outline })
}

/// Reads the outline of a stored bundle: inflating stops as soon as it is
/// read, so the cost does not grow with the sources.
pub fn read_outline(compressed: &[u8]) -> Result<Map<String, Value>, BundleError> {
    let mut sink = OutlineOnly(None);
    let read = parse(compressed, u64::MAX, &mut sink);
    match (read, sink.0) {
        (Err(OutlineRead::Stop), Some(outline)) => Ok(outline),
        (Err(OutlineRead::Bundle(err)), _) => Err(err),
        // Parsing reads the outline first, or fails.
        (_, _) => Err(BundleError::Missing { member: "outline" }),
    }
}

// ---------------------------------------------------------------------------
// What is done with the parts of a bundle as they are read
// ---------------------------------------------------------------------------

trait Sink {
    /// Whether module texts are handed to [`Sink::source`], or only checked
    /// to be strings and dropped.
    const KEEPS_TEXT: bool;
    /// What the sink refuses with; the bundle's own faults become one too.
    type Error: From<BundleError>;
    /// The outline, read before anything else; an error stops reading.
    fn outline(&mut self, outline: Map<String, Value>) -> Result<(), Self::Error>;
    /// A module's name, before its text is read; an error stops reading.
    fn module(&mut self, module: &str) -> Result<(), Self::Error>;
    fn source(&mut self, module: String, text: Option<String>);
}

#[derive(Default)]
struct Collect {
    outline: Option<Map<String, Value>>,
    sources: BTreeMap<String, String>,
}

impl Sink for Collect {
    const KEEPS_TEXT: bool = true;
    type Error = BundleError;

    fn outline(&mut self, outline: Map<String, Value>) -> Result<(), BundleError> {
        self.outline = Some(outline);
        Ok(())
    }

    fn module(&mut self, _: &str) -> Result<(), BundleError> {
        Ok(())
    }

    fn source(&mut self, module: String, text: Option<String>) {
        self.sources.insert(module, text.unwrap_or_default());
    }
}

/// Keeps the outline, then stops the reading.
struct OutlineOnly(Option<Map<String, Value>>);

enum OutlineRead {
    Stop,
    Bundle(BundleError),
}

impl From<BundleError> for OutlineRead {
    fn from(err: BundleError) -> OutlineRead {
        OutlineRead::Bundle(err)
    }
}

impl Sink for OutlineOnly {
    const KEEPS_TEXT: bool = false;
    type Error = OutlineRead;

    fn outline(&mut self, outline: Map<String, Value>) -> Result<(), OutlineRead> {
        self.0 = Some(outline);
        Err(OutlineRead::Stop)
    }

    fn module(&mut self, _: &str) -> Result<(), OutlineRead> {
        Ok(())
    }

    fn source(&mut self, _: String, _: Option<String>) {}
}

struct Checker<'k, F> {
    authorize: Option<F>,
    kernel: outline::KernelCode<'k>,
    read: Option<(Map<String, Value>, Outline, outline::SourceCheck)>,
}

impl<E: From<BundleError>, F: FnOnce(&Outline) -> Result<(), E>> Sink for Checker<'_, F> {
    const KEEPS_TEXT: bool = false;
    type Error = E;

    fn outline(&mut self, manifest: Map<String, Value>) -> Result<(), E> {
        let outline = outline::validate_outline(&manifest)?;
        let authorize = self.authorize.take().expect("a bundle has one outline");
        authorize(&outline)?;
        let sources = outline::SourceCheck::new(&outline, self.kernel);
        self.read = Some((manifest, outline, sources));
        Ok(())
    }

    fn module(&mut self, module: &str) -> Result<(), E> {
        let (_, _, sources) = self.read.as_mut().expect("the outline comes first");
        Ok(sources.module(module)?)
    }

    fn source(&mut self, _: String, _: Option<String>) {}
}

// ---------------------------------------------------------------------------
// The inflated size, metered
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Overflow {
    Bundle,
    Outline,
}

/// Counts inflated bytes against the cap in force: the bundle's, or the
/// outline's while the outline is read.
struct Meter {
    read: Cell<u64>,
    max: u64,
    limit: Cell<(u64, Overflow)>,
    tripped: Cell<Option<Overflow>>,
}

impl Meter {
    fn new(max: u64) -> Meter {
        Meter {
            read: Cell::new(0),
            max,
            limit: Cell::new((max, Overflow::Bundle)),
            tripped: Cell::new(None),
        }
    }

    /// The outline starts: it may use [`MAX_OUTLINE_BYTES`] from here (plus
    /// what was read ahead, so that an outline under the limit always passes).
    fn outline_starts(&self) {
        let outline = self.read.get() + MAX_OUTLINE_BYTES + READ_AHEAD as u64;
        self.limit.set(if outline < self.max {
            (outline, Overflow::Outline)
        } else {
            (self.max, Overflow::Bundle)
        });
    }

    fn outline_ends(&self) {
        self.limit.set((self.max, Overflow::Bundle));
    }
}

struct Metered<'m, R> {
    inner: R,
    meter: &'m Meter,
}

impl<R: Read> Read for Metered<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let (limit, overflow) = self.meter.limit.get();
        // One byte past the limit is enough to know it was passed.
        let room = limit.saturating_sub(self.meter.read.get()).saturating_add(1);
        let wanted = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let count = self.inner.read(&mut buf[..wanted])?;
        self.meter.read.set(self.meter.read.get() + count as u64);
        if self.meter.read.get() > limit {
            self.meter.tripped.set(Some(overflow));
            return Err(std::io::Error::other("the inflated size limit was passed"));
        }
        Ok(count)
    }
}

// ---------------------------------------------------------------------------
// The strict, streaming parser
// ---------------------------------------------------------------------------

/// Shared by the visitors of one parse: the meter, and the error that
/// stopped it when it was ours rather than the JSON's (serde can only carry
/// a message, so the error itself waits here).
struct Context<'m> {
    meter: &'m Meter,
    failure: RefCell<Option<BundleError>>,
    /// Where the outline repeated a key ([`Strict`] keeps it here).
    repeated: RefCell<Option<String>>,
}

impl Context<'_> {
    fn fail<E: de::Error>(&self, error: BundleError) -> E {
        let message = error.to_string();
        self.failure.borrow_mut().get_or_insert(error);
        E::custom(message)
    }
}

/// Stops the parse for a refusal of the sink, kept in `refused` (its type is
/// the sink's, so it cannot wait in the [`Context`]).
fn refuse<S: Sink, E: de::Error>(refused: &RefCell<Option<S::Error>>, error: S::Error) -> E {
    refused.borrow_mut().get_or_insert(error);
    E::custom("refused")
}

fn parse<S: Sink>(compressed: &[u8], max_inflated: u64, sink: &mut S) -> Result<(), S::Error> {
    let mut decoder = GzDecoder::new(compressed);
    let meter = Meter::new(max_inflated);
    let context = Context {
        meter: &meter,
        failure: RefCell::new(None),
        repeated: RefCell::new(None),
    };
    let refused = RefCell::new(None);
    let parsed = {
        let metered = Metered {
            inner: &mut decoder,
            meter: &meter,
        };
        let mut json = serde_json::Deserializer::from_reader(BufReader::with_capacity(READ_AHEAD, metered));
        json.deserialize_map(Top {
            context: &context,
            sink,
            refused: &refused,
        })
        .and_then(|()| json.end())
    };
    if let Err(err) = parsed {
        return Err(match refused.into_inner() {
            Some(refusal) => refusal,
            None => parse_error(err, context, max_inflated, decoder.header().is_some()).into(),
        });
    }
    if !decoder.into_inner().is_empty() {
        return Err(BundleError::TrailingData.into());
    }
    Ok(())
}

fn parse_error(err: serde_json::Error, context: Context, max_inflated: u64, gzip: bool) -> BundleError {
    if let Some(ours) = context.failure.into_inner() {
        return ours;
    }
    if let Some(path) = context.repeated.into_inner() {
        return BundleError::DuplicateKey { path };
    }
    match context.meter.tripped.get() {
        Some(Overflow::Bundle) => return BundleError::TooLarge { max_inflated },
        Some(Overflow::Outline) => return BundleError::OutlineTooLarge,
        None => {}
    }
    if !gzip {
        BundleError::NotGzip
    } else if err.is_io() {
        BundleError::IncompleteGzip(err)
    } else {
        BundleError::NotABundle(err)
    }
}

fn duplicate(path: &Path) -> BundleError {
    BundleError::DuplicateKey { path: path.to_string() }
}

/// The top-level object: `outline`, then `sources`.
struct Top<'c, 'm, S: Sink> {
    context: &'c Context<'m>,
    sink: &'c mut S,
    refused: &'c RefCell<Option<S::Error>>,
}

impl<'de, S: Sink> Visitor<'de> for Top<'_, '_, S> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object with outline and sources")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let context = self.context;
        let (mut outline, mut sources) = (false, false);
        while let Some(key) = map.next_key::<TopKey>()? {
            match key {
                TopKey::Outline if !outline => {
                    outline = true;
                    context.meter.outline_starts();
                    let path = Path::Member(&Path::Top, "outline");
                    let value = map.next_value_seed(Strict::new(&path, &context.repeated))?;
                    context.meter.outline_ends();
                    let Value::Object(value) = value else {
                        return Err(context.fail(BundleError::OutlineNotAnObject));
                    };
                    self.sink
                        .outline(value)
                        .map_err(|err| refuse::<S, _>(self.refused, err))?;
                }
                TopKey::Sources if !outline => {
                    return Err(context.fail(BundleError::SourcesFirst));
                }
                TopKey::Sources if !sources => {
                    sources = true;
                    map.next_value_seed(Sources {
                        context,
                        sink: &mut *self.sink,
                        refused: self.refused,
                    })?;
                }
                TopKey::Outline => return Err(context.fail(duplicate(&Path::Member(&Path::Top, "outline")))),
                TopKey::Sources => return Err(context.fail(duplicate(&Path::Member(&Path::Top, "sources")))),
                TopKey::Other(name) => {
                    return Err(context.fail(BundleError::UnexpectedMember { name }));
                }
            }
        }
        if !(outline && sources) {
            let missing = if outline { "sources" } else { "outline" };
            return Err(context.fail(BundleError::Missing { member: missing }));
        }
        Ok(())
    }
}

/// A top-level key, recognized without copying a long one.
enum TopKey {
    Outline,
    Sources,
    /// The start of an unexpected key.
    Other(String),
}

impl<'de> de::Deserialize<'de> for TopKey {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<TopKey, D::Error> {
        deserializer.deserialize_str(TopKeyVisitor)
    }
}

struct TopKeyVisitor;

impl<'de> Visitor<'de> for TopKeyVisitor {
    type Value = TopKey;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<TopKey, E> {
        Ok(match key {
            "outline" => TopKey::Outline,
            "sources" => TopKey::Sources,
            other => TopKey::Other(other.chars().take(80).collect()),
        })
    }
}

/// `sources`: module names checked by the sink before their text is read.
struct Sources<'c, 'm, S: Sink> {
    context: &'c Context<'m>,
    sink: &'c mut S,
    refused: &'c RefCell<Option<S::Error>>,
}

impl<'de, S: Sink> DeserializeSeed<'de> for Sources<'_, '_, S> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, S: Sink> Visitor<'de> for Sources<'_, '_, S> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of module names to texts")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let context = self.context;
        let mut seen = HashSet::new();
        while let Some(module) = map.next_key_seed(ModuleName(context))? {
            let path = Path::Member(&Path::Member(&Path::Top, "sources"), &module);
            if seen.contains(&module) {
                return Err(context.fail(duplicate(&path)));
            }
            if seen.len() == MAX_MODULES {
                return Err(context.fail(BundleError::TooManyModules));
            }
            self.sink
                .module(&module)
                .map_err(|err| refuse::<S, _>(self.refused, err))?;
            let text = map.next_value_seed(Text { keep: S::KEEPS_TEXT })?;
            seen.insert(module.clone());
            self.sink.source(module, text);
        }
        Ok(())
    }
}

/// A module name, refused before it is copied when it is too long.
struct ModuleName<'c, 'm>(&'c Context<'m>);

impl<'de> DeserializeSeed<'de> for ModuleName<'_, '_> {
    type Value = String;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for ModuleName<'_, '_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a module name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<String, E> {
        if name.len() > MAX_MODULE_NAME {
            let start: String = name.chars().take(80).collect();
            return Err(self.0.fail(BundleError::ModuleNameTooLong {
                field: format!("sources.{start}"),
            }));
        }
        Ok(name.to_string())
    }
}

/// A module's text: checked to be a string, kept only when asked.
struct Text {
    keep: bool,
}

impl<'de> DeserializeSeed<'de> for Text {
    type Value = Option<String>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Option<String>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Text {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a module's text")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Option<String>, E> {
        Ok(self.keep.then(|| text.to_string()))
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<Option<String>, E> {
        Ok(self.keep.then_some(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use outline::KernelCode;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    const OUTLINE: &str = r#"{"type":"package","platform":"common","name":"gren-lang/url","summary":"URLs","license":"BSD-3-Clause","version":"6.0.0","exposed-modules":["Url"],"gren-version":"0.6.0 <= v < 0.7.0","dependencies":{"gren-lang/core":"7.0.0 <= v < 8.0.0"}}"#;

    /// A valid bundle with `sources` as given (JSON text).
    fn valid_with(sources: &str) -> Vec<u8> {
        gzip(format!(r#"{{"outline":{OUTLINE},"sources":{sources}}}"#).as_bytes())
    }

    fn allow(_: &Outline) -> Result<(), BundleError> {
        Ok(())
    }

    #[test]
    fn reads_a_minimal_bundle() {
        let bundle = read(
            &gzip(br#"{"outline":{"type":"package"},"sources":{"A":"module A"}}"#),
            1000,
        )
        .unwrap();
        assert_eq!(bundle.sources["A"], "module A");
        assert_eq!(bundle.outline["type"], "package");
    }

    #[test]
    fn checks_a_valid_bundle_without_keeping_its_sources() {
        let checked = check(
            &valid_with(r#"{"Url":"module Url","Url.Parser":"x"}"#),
            1 << 20,
            KernelCode::AnyAuthor,
            allow,
        )
        .unwrap();
        assert_eq!(checked.outline.name.to_string(), "gren-lang/url");
        assert_eq!(checked.manifest["license"], "BSD-3-Clause");
    }

    #[test]
    fn refuses_bad_gzip_and_bad_json() {
        let good = gzip(br#"{"outline":{},"sources":{}}"#);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"not gzip".to_vec(), "not gzip data"),
            (Vec::new(), "not gzip data"),
            (good[..good.len() - 4].to_vec(), "not a complete gzip stream"),
            (good[..good.len() / 2].to_vec(), "not a complete gzip stream"),
            (
                [good.clone(), b"junk".to_vec()].concat(),
                "after the end of its gzip stream",
            ),
            (
                [good.clone(), good.clone()].concat(),
                "after the end of its gzip stream",
            ),
            (gzip(b"\xff\xfe{}"), "is not"),
            (gzip(b"{\"outline\":{\"a\":\"\xff\"},\"sources\":{}}"), "is not"),
            (gzip(br#"{"outline":{}}"#), "no sources"),
            (gzip(br#"{"sources":{}}"#), "before its outline"),
            (gzip(br#"{"outline":{},"sources":{"A":1}}"#), "a module's text"),
            (gzip(br#"{"outline":[],"sources":{}}"#), "outline is not an object"),
            (
                gzip(br#"{"outline":{},"sources":{},"extra":1}"#),
                "may only have outline and sources",
            ),
            (gzip(br#"{"outline":{},"sources":{}} {}"#), "trailing characters"),
            (gzip(br#"[]"#), "is not"),
        ];
        for (index, (body, expected)) in cases.into_iter().enumerate() {
            match read(&body, 1 << 20) {
                Ok(_) => panic!("case {index} was accepted"),
                Err(err) => {
                    let outline_or_size = matches!(
                        err,
                        BundleError::TooLarge { .. }
                            | BundleError::OutlineTooLarge
                            | BundleError::InvalidOutline { .. }
                    );
                    assert!(!outline_or_size, "case {index}: {err:?}");
                    assert!(err.to_string().contains(expected), "case {index}: {err}");
                }
            }
        }
        read(&good, 1 << 20).expect("the intact bundle reads");
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_cap() {
        let bomb = gzip(&vec![b' '; 50 << 20]);
        assert!(bomb.len() < 100 << 10, "50 MiB of spaces compresses well");
        let err = read(&bomb, 1 << 20).unwrap_err();
        assert!(
            matches!(err, BundleError::TooLarge { max_inflated: 1048576 }),
            "{err:?}"
        );
        let text = format!(
            r#"{{"outline":{OUTLINE},"sources":{{"Url":"{}"}}}}"#,
            "a".repeat(2 << 20)
        );
        let err = check(&gzip(text.as_bytes()), 1 << 20, KernelCode::AnyAuthor, allow).unwrap_err();
        assert!(matches!(err, BundleError::TooLarge { .. }), "{err:?}");
        check(&gzip(text.as_bytes()), 3 << 20, KernelCode::AnyAuthor, allow)
            .expect("the same bundle under a higher cap");
    }

    #[test]
    fn the_inflated_cap_is_exact() {
        let text = format!(r#"{{"outline":{OUTLINE},"sources":{{"Url":"x"}}}}"#);
        let size = text.len() as u64;
        check(&gzip(text.as_bytes()), size, KernelCode::AnyAuthor, allow).expect("exactly the cap");
        let err = check(&gzip(text.as_bytes()), size - 1, KernelCode::AnyAuthor, allow).unwrap_err();
        assert!(matches!(err, BundleError::TooLarge { .. }), "{err:?}");
    }

    #[test]
    fn duplicate_keys_are_refused_with_their_path_at_every_depth() {
        let outline_with = |extra: &str| OUTLINE.replacen('{', &format!("{{{extra},"), 1);
        let cases = [
            (
                format!(r#"{{"outline":{OUTLINE},"sources":{{"Url":"x"}},"outline":{OUTLINE}}}"#),
                "outline",
            ),
            (
                format!(r#"{{"outline":{OUTLINE},"sources":{{"Url":"x"}},"sources":{{}}}}"#),
                "sources",
            ),
            (
                format!(
                    r#"{{"outline":{},"sources":{{"Url":"x"}}}}"#,
                    outline_with(r#""name":"a/b""#)
                ),
                "outline.name",
            ),
            (
                format!(r#"{{"outline":{OUTLINE},"sources":{{"Url":"x","Url":"y"}}}}"#),
                "sources.Url",
            ),
            (
                format!(
                    r#"{{"outline":{},"sources":{{"Url":"x"}}}}"#,
                    OUTLINE.replace(
                        r#""dependencies":{"#,
                        r#""dependencies":{"gren-lang/core":"1.0.0 <= v < 2.0.0","#
                    )
                ),
                "outline.dependencies.gren-lang/core",
            ),
            (
                format!(
                    r#"{{"outline":{},"sources":{{"Url":"x"}}}}"#,
                    outline_with(r#""extra":[{"a":1},{"b":1,"b":2}]"#)
                ),
                "outline.extra[1].b",
            ),
        ];
        for (text, path) in cases {
            for result in [
                read(&gzip(text.as_bytes()), 1 << 20).map(drop),
                check(&gzip(text.as_bytes()), 1 << 20, KernelCode::AnyAuthor, allow).map(drop),
            ] {
                let err = result.expect_err(path);
                assert!(matches!(err, BundleError::DuplicateKey { .. }), "{err:?}");
                assert_eq!(err.field(), Some(path), "{err}");
                assert!(err.to_string().contains(&format!("The key {path} appears")), "{err}");
            }
        }
    }

    #[test]
    fn the_check_stops_at_the_outline_when_the_caller_may_not_publish() {
        // The sources are not even valid JSON: they are never read.
        let text = format!(r#"{{"outline":{OUTLINE},"sources":{{"Url": this is never parsed"#);
        /// The caller's refusal, or the bundle's.
        #[derive(Debug)]
        enum Refused {
            NotYours,
            #[allow(dead_code)] // only its Debug is read
            Bundle(BundleError),
        }
        impl From<BundleError> for Refused {
            fn from(err: BundleError) -> Refused {
                Refused::Bundle(err)
            }
        }
        let err = check(&gzip(text.as_bytes()), 1 << 20, KernelCode::AnyAuthor, |outline| {
            assert_eq!(outline.name.to_string(), "gren-lang/url");
            Err(Refused::NotYours)
        })
        .unwrap_err();
        assert!(matches!(err, Refused::NotYours), "{err:?}");
    }

    #[test]
    fn an_invalid_outline_is_refused_before_the_sources_are_read() {
        let text = format!(
            r#"{{"outline":{},"sources":{{"Url": this is never parsed"#,
            OUTLINE.replace("BSD-3-Clause", "WTFPL")
        );
        let err = check(&gzip(text.as_bytes()), 1 << 20, KernelCode::AnyAuthor, allow).unwrap_err();
        assert_eq!(err.field(), Some("outline.license"), "{err}");
    }

    #[test]
    fn modules_are_checked_as_they_stream_past() {
        let err = check(
            &valid_with(r#"{"Url":"x","lower":"y"}"#),
            1 << 20,
            KernelCode::AnyAuthor,
            allow,
        )
        .unwrap_err();
        assert_eq!(err.field(), Some("sources.lower"), "{err}");
        let err = check(&valid_with(r#"{"Other":"x"}"#), 1 << 20, KernelCode::AnyAuthor, allow).unwrap_err();
        assert_eq!(err.field(), Some("outline.exposed-modules"), "{err}");
        let long = format!(r#"{{"Url":"x","{}":"y"}}"#, "A".repeat(300));
        let err = check(&valid_with(&long), 1 << 20, KernelCode::AnyAuthor, allow).unwrap_err();
        assert!(err.to_string().contains("shorter than 256 bytes"), "{err}");
    }

    #[test]
    fn outlines_and_module_counts_are_bounded() {
        let huge = OUTLINE.replacen('{', &format!(r#"{{"padding":"{}","#, "x".repeat(400 << 10)), 1);
        let text = format!(r#"{{"outline":{huge},"sources":{{"Url":"x"}}}}"#);
        let err = check(&gzip(text.as_bytes()), 64 << 20, KernelCode::AnyAuthor, allow).unwrap_err();
        assert!(matches!(err, BundleError::OutlineTooLarge), "{err:?}");
        assert_eq!(err.field(), Some("outline"), "{err}");
        let fits = OUTLINE.replacen('{', &format!(r#"{{"padding":"{}","#, "x".repeat(250 << 10)), 1);
        let text = format!(r#"{{"outline":{fits},"sources":{{"Url":"x"}}}}"#);
        check(&gzip(text.as_bytes()), 64 << 20, KernelCode::AnyAuthor, allow).expect("an outline under the limit");

        let modules: Vec<String> = (0..=MAX_MODULES).map(|n| format!(r#""M{n}":"""#)).collect();
        let text = format!(r#"{{"Url":"x",{}}}"#, modules.join(","));
        let err = check(&valid_with(&text), 64 << 20, KernelCode::AnyAuthor, allow).unwrap_err();
        assert!(err.to_string().contains("more than 10000 modules"), "{err}");
    }
}
