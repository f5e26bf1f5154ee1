//! A package's documentation, read from the sources of its bundle, without
//! the compiler: the `docs.json` that `gren docs` writes, and the API
//! difference between two versions with the magnitude `gren package bump`
//! would give it ([`diff`]).
//!
//! ## Format
//!
//! As the compiler writes it (`Gren.Docs.encode`, `gren-lang/compiler`
//! 0.6): an object keyed by module name (not an array), in name order, each
//! module
//! `{"name", "comment", "unions", "aliases", "values", "binops"}` with its
//! fields in that order, each list in name order (byte order):
//! a union `{"name", "comment", "args", "cases": [["Tag", ["type", …]], …]}`
//! (its cases in the order of the source, none when the type is exposed
//! without `(..)`), an alias `{"name", "comment", "args", "type"}`, a value
//! (or a port) `{"name", "comment", "type"}`, an operator
//! `{"name", "comment", "type", "associativity": "left"|"non"|"right",
//! "precedence": 0-9}`. Comments are the text between `{-|` and `-}`,
//! unchanged but for carriage returns, which are dropped (`Json.String.fromComment`);
//! a module's `@docs` lines are kept in it as text.
//!
//! Where it is not the compiler's:
//! - **Types are the source's text**, with comments removed and spaces
//!   collapsed to one (`Dict k v -> Maybe v`); the compiler writes its
//!   canonical type, with every name qualified (`Dict.Dict k v -> Maybe.Maybe v`)
//!   and aliases as named. So a change of the text alone is a warning to
//!   [`diff`], never a breaking change.
//! - A declaration without a doc comment has `""`, an exposed value without
//!   an annotation `""` as its type, a module without a doc comment `""`,
//!   and `exposing (..)` exposes every top-level declaration; the compiler
//!   refuses to document such modules.
//!
//! ## Reading
//!
//! [`read`] reads a module in one pass of its [`lex`]er: top-level
//! declarations are the tokens starting at column 1; an operator
//! (`infix left 6 (+) = add`) takes its type and comment from the function
//! it names. Only the tokens of a header, annotation, type or `infix`
//! declaration are kept, at most [`MAX_DECLARATION_TOKENS`] of each; a
//! definition's body is skipped token by token; a module's documentation
//! copies at most [`MAX_DOCS_PER_SOURCE_BYTE`] bytes per byte of its source
//! (plus [`MAX_DOCS_SLACK`]), each name exposed twice being documented once.
//! So the time is linear in the sources and the memory is the sources, the
//! output and one declaration, whatever the bundle holds (its inflated size
//! is capped by [`bundle::read`]).
//!
//! A bundle the compiler built always reads; [`DocsError`] is for the
//! others (an exposed module missing or without its header, a name exposed
//! but not declared, a cap passed). [`fuzzing`] is the fuzz target's entry.
//! Nothing here is stored: the caller keeps [`Docs::to_json`]'s bytes.

mod diff;
pub mod fuzzing;
mod lex;
mod read;
#[cfg(test)]
mod tests;

use crate::bundle::{self, BundleError, outline};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use std::collections::BTreeMap;

pub use diff::{ApiDiff, Changes, Magnitude, ModuleDiff, Warning, diff};
pub use read::{MAX_DECLARATION_TOKENS, MAX_DOCS_PER_SOURCE_BYTE, MAX_DOCS_SLACK};

/// A package's documentation: its exposed modules by name.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Docs {
    pub modules: BTreeMap<String, Module>,
}

/// One module's documentation; every list is in name order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Module {
    pub name: String,
    pub comment: String,
    pub unions: Vec<Union>,
    pub aliases: Vec<Alias>,
    pub values: Vec<Value>,
    pub binops: Vec<Binop>,
}

/// A custom type; `cases` is empty when it is exposed without `(..)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Union {
    pub name: String,
    pub comment: String,
    pub args: Vec<String>,
    /// Each constructor with the types of its arguments.
    pub cases: Vec<(String, Vec<String>)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alias {
    pub name: String,
    pub comment: String,
    pub args: Vec<String>,
    #[serde(rename = "type")]
    pub tipe: String,
}

/// A value or a port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Value {
    pub name: String,
    pub comment: String,
    #[serde(rename = "type")]
    pub tipe: String,
}

/// An operator: the comment and type are those of the function it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binop {
    pub name: String,
    pub comment: String,
    #[serde(rename = "type")]
    pub tipe: String,
    pub associativity: Associativity,
    pub precedence: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Associativity {
    Left,
    Non,
    Right,
}

/// Why a bundle's documentation could not be read. None of these happens
/// to a bundle the compiler built.
#[derive(Debug, thiserror::Error)]
pub enum DocsError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("{module}: the module is exposed but not in the bundle's sources.")]
    MissingModule { module: String },
    #[error("{module}: the source does not start with `module {module} exposing (…)`.")]
    NoHeader { module: String },
    #[error("{module}: the source's header names the module {header}.")]
    WrongName { module: String, header: String },
    #[error("{module}: {name} is exposed but not declared.")]
    Undeclared { module: String, name: String },
    #[error(
        "{module}, line {line}: the declaration has more than {MAX_DECLARATION_TOKENS} tokens, more than documentation is read for."
    )]
    TooLong { module: String, line: usize },
    #[error(
        "{module}: its documentation would copy more than {MAX_DOCS_PER_SOURCE_BYTE} bytes of text per byte of its source."
    )]
    TooLarge { module: String },
}

/// The documentation of a bundle as stored: `compressed` is read with
/// [`bundle::read`] (at most `max_inflated` bytes inflated).
pub fn of_bundle(compressed: &[u8], max_inflated: u64) -> Result<Docs, DocsError> {
    let bundle = bundle::read(compressed, max_inflated)?;
    of_sources(&bundle.outline, &bundle.sources)
}

/// The documentation of a bundle already read: its exposed modules (the
/// outline's `exposed-modules`, a list or categories of lists) from their
/// sources. The outline must pass [`outline::validate_outline`], as every
/// published one did.
pub fn of_sources(outline: &Map<String, Json>, sources: &BTreeMap<String, String>) -> Result<Docs, DocsError> {
    let outline = outline::validate_outline(outline)?;
    let mut modules = BTreeMap::new();
    for module in outline.exposed_modules {
        let Some(source) = sources.get(&module) else {
            return Err(DocsError::MissingModule { module });
        };
        let docs = read::module(&module, source)?;
        modules.insert(module, docs);
    }
    Ok(Docs { modules })
}

/// One module's documentation from its source; `name` is the name the
/// header must have.
pub fn of_module(name: &str, source: &str) -> Result<Module, DocsError> {
    read::module(name, source)
}

impl Docs {
    /// `docs.json`: compact, as `gren docs` writes it.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("documentation always serializes")
    }

    /// Reads back what [`Docs::to_json`] wrote (or `gren docs`).
    pub fn from_json(bytes: &[u8]) -> Result<Docs, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

impl Module {
    /// The names the module exposes: types, aliases, values and operators.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        let unions = self.unions.iter().map(|union| union.name.as_str());
        let aliases = self.aliases.iter().map(|alias| alias.name.as_str());
        let values = self.values.iter().map(|value| value.name.as_str());
        let binops = self.binops.iter().map(|binop| binop.name.as_str());
        unions.chain(aliases).chain(values).chain(binops)
    }
}
