//! The API difference between two versions' documentation, and the
//! magnitude of version bump it needs, by the rules of `gren package bump`
//! (`Deps.Diff` in the compiler): anything removed or changed needs a major
//! version, anything added a minor one, nothing a patch.
//!
//! - Exposing the constructors of a type that was opaque adds them (minor).
//!   Any other change of an exposed type's constructors (one added, removed
//!   or reordered) lists the type as changed (major) and the constructors
//!   as added or removed; a constructor with another number of arguments is
//!   a changed constructor (major).
//! - A type or alias with another number of type arguments, and an
//!   operator with another associativity or precedence, are changed (major).
//!
//! Where the compiler compares canonical types, this compares the source's
//! texts, which change with an import or an alias the compiler sees
//! through (and stay the same when an imported type changes): a
//! declaration whose type text alone changed is a [`Warning`], never a
//! change, so it counts for nothing in the magnitude. Comments never count.

use super::{Alias, Binop, Docs, Module, Union, Value};
use crate::package::Version;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How much a version number must grow; ordered `Patch < Minor < Major`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Magnitude {
    #[default]
    Patch,
    Minor,
    Major,
}

impl Magnitude {
    /// The magnitude of the step from version `old` to version `new`.
    pub fn between(old: Version, new: Version) -> Magnitude {
        if new.major != old.major {
            Magnitude::Major
        } else if new.minor != old.minor {
            Magnitude::Minor
        } else {
            Magnitude::Patch
        }
    }

    /// The version `gren package bump` would give after `old` (None past 65535).
    pub fn bump(self, old: Version) -> Option<Version> {
        Some(match self {
            Magnitude::Major => Version::new(old.major.checked_add(1)?, 0, 0),
            Magnitude::Minor => Version::new(old.major, old.minor.checked_add(1)?, 0),
            Magnitude::Patch => Version::new(old.major, old.minor, old.patch.checked_add(1)?),
        })
    }
}

/// What changed between two versions' documentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiDiff {
    pub magnitude: Magnitude,
    /// Modules exposed now and not before, and the reverse.
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// The modules in both whose API changed, by name.
    pub changed: BTreeMap<String, ModuleDiff>,
    /// Types whose text alone changed: not counted in the magnitude.
    pub warnings: Vec<Warning>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ModuleDiff {
    pub magnitude: Magnitude,
    pub values: Changes,
    pub types: Changes,
    pub constructors: Changes,
    pub aliases: Changes,
    pub operators: Changes,
}

/// Names added, removed, and changed in a way that needs a major version.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

/// A declaration whose type text changed, nothing else: `old` and `new`
/// are the declaration as written (`get : k -> Dict k v -> Maybe v`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    pub module: String,
    pub name: String,
    pub old: String,
    pub new: String,
}

impl ApiDiff {
    /// Every name that needs `magnitude` or more, modules as they are and
    /// declarations as `Module.name`, in module order: the names a refusal
    /// quotes.
    pub fn names_needing(&self, magnitude: Magnitude) -> Vec<String> {
        let mut names: Vec<String> = self.removed.clone();
        if magnitude <= Magnitude::Minor {
            names.extend(self.added.iter().cloned());
        }
        for (module, changes) in &self.changed {
            for (needs, name) in changes.names() {
                if needs >= magnitude {
                    names.push(format!("{module}.{name}"));
                }
            }
        }
        names
    }
}

impl ModuleDiff {
    /// Each name with the magnitude it needs: removed or changed, major;
    /// added, minor (a type whose constructors changed is itself changed).
    fn names(&self) -> Vec<(Magnitude, &str)> {
        let mut names = Vec::new();
        for changes in self.lists() {
            names.extend(changes.removed.iter().map(|name| (Magnitude::Major, name.as_str())));
            names.extend(changes.changed.iter().map(|name| (Magnitude::Major, name.as_str())));
            names.extend(changes.added.iter().map(|name| (Magnitude::Minor, name.as_str())));
        }
        names
    }

    fn lists(&self) -> [&Changes; 5] {
        [
            &self.values,
            &self.types,
            &self.constructors,
            &self.aliases,
            &self.operators,
        ]
    }

    fn is_empty(&self) -> bool {
        self.lists()
            .iter()
            .all(|changes| changes.added.is_empty() && changes.removed.is_empty() && changes.changed.is_empty())
    }
}

/// The difference from `old` to `new`.
pub fn diff(old: &Docs, new: &Docs) -> ApiDiff {
    let mut result = ApiDiff {
        magnitude: Magnitude::Patch,
        added: Vec::new(),
        removed: Vec::new(),
        changed: BTreeMap::new(),
        warnings: Vec::new(),
    };
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    for (name, old_module, new_module) in matched(&old.modules, &new.modules, &mut added, &mut removed) {
        let module = diff_module(old_module, new_module, &mut result.warnings);
        result.magnitude = result.magnitude.max(module.magnitude);
        if !module.is_empty() {
            result.changed.insert(name.to_string(), module);
        }
    }
    if !added.is_empty() {
        result.magnitude = result.magnitude.max(Magnitude::Minor);
    }
    if !removed.is_empty() {
        result.magnitude = Magnitude::Major;
    }
    result.added = added.into_iter().map(str::to_string).collect();
    result.removed = removed.into_iter().map(str::to_string).collect();
    result
}

/// The entries of two maps with the same keys; the others go to `added`
/// (only in `new`) and `removed` (only in `old`), in key order.
fn matched<'a, T>(
    old: &'a BTreeMap<String, T>,
    new: &'a BTreeMap<String, T>,
    added: &mut Vec<&'a str>,
    removed: &mut Vec<&'a str>,
) -> Vec<(&'a str, &'a T, &'a T)> {
    added.extend(new.keys().filter(|name| !old.contains_key(*name)).map(String::as_str));
    removed.extend(old.keys().filter(|name| !new.contains_key(*name)).map(String::as_str));
    old.iter()
        .filter_map(|(name, old)| Some((name.as_str(), old, new.get(name)?)))
        .collect()
}

/// The same for two lists of named entries: the pairs in both, the names
/// only in one going to `changes`.
fn matched_by_name<'a, T>(
    old: &'a [T],
    new: &'a [T],
    name: fn(&T) -> &str,
    changes: &mut Changes,
) -> Vec<(&'a T, &'a T)> {
    let by_name =
        |list: &'a [T]| -> BTreeMap<String, &'a T> { list.iter().map(|item| (name(item).to_string(), item)).collect() };
    let (old, new) = (by_name(old), by_name(new));
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    let pairs = matched(&old, &new, &mut added, &mut removed);
    changes.added.extend(added.into_iter().map(str::to_string));
    changes.removed.extend(removed.into_iter().map(str::to_string));
    pairs.into_iter().map(|(_, old, new)| (*old, *new)).collect()
}

/// Collects one module's changes and warnings, and the magnitude they need.
struct ModuleCompare<'w> {
    module: &'w str,
    diff: ModuleDiff,
    warnings: &'w mut Vec<Warning>,
}

impl ModuleCompare<'_> {
    fn warn(&mut self, name: &str, old: String, new: String) {
        if old != new {
            self.warnings.push(Warning {
                module: self.module.to_string(),
                name: name.to_string(),
                old,
                new,
            });
        }
    }

    fn values(&mut self, old: &[Value], new: &[Value]) {
        for (old, new) in matched_by_name(old, new, |value| &value.name, &mut self.diff.values) {
            self.warn(
                &old.name,
                signature(&old.name, &old.tipe),
                signature(&new.name, &new.tipe),
            );
        }
    }

    fn operators(&mut self, old: &[Binop], new: &[Binop]) {
        for (old, new) in matched_by_name(old, new, |binop| &binop.name, &mut self.diff.operators) {
            if (old.associativity, old.precedence) != (new.associativity, new.precedence) {
                self.diff.operators.changed.push(old.name.clone());
            }
            let name = format!("({})", old.name);
            self.warn(&old.name, signature(&name, &old.tipe), signature(&name, &new.tipe));
        }
    }

    fn aliases(&mut self, old: &[Alias], new: &[Alias]) {
        for (old, new) in matched_by_name(old, new, |alias| &alias.name, &mut self.diff.aliases) {
            if old.args.len() != new.args.len() {
                self.diff.aliases.changed.push(old.name.clone());
            } else {
                self.warn(&old.name, alias(old), alias(new));
            }
        }
    }

    fn types(&mut self, old: &[Union], new: &[Union]) {
        for (old, new) in matched_by_name(old, new, |union| &union.name, &mut self.diff.types) {
            if old.args.len() != new.args.len() {
                self.diff.types.changed.push(old.name.clone());
                continue;
            }
            self.warn(&old.name, union_head(old), union_head(new));
            self.constructors(old, new);
        }
    }

    fn constructors(&mut self, old: &Union, new: &Union) {
        let opaque_before = old.cases.is_empty();
        let constructors = &mut self.diff.constructors;
        let before = constructors.added.len() + constructors.removed.len();
        let old_tags: BTreeMap<&str, &Vec<String>> = old.cases.iter().map(|(tag, args)| (tag.as_str(), args)).collect();
        let new_tags: BTreeMap<&str, &Vec<String>> = new.cases.iter().map(|(tag, args)| (tag.as_str(), args)).collect();
        constructors.added.extend(
            new_tags
                .keys()
                .filter(|tag| !old_tags.contains_key(*tag))
                .map(|tag| tag.to_string()),
        );
        constructors.removed.extend(
            old_tags
                .keys()
                .filter(|tag| !new_tags.contains_key(*tag))
                .map(|tag| tag.to_string()),
        );
        let order = |cases: &[(String, Vec<String>)]| cases.iter().map(|(tag, _)| tag.clone()).collect::<Vec<_>>();
        // Only exposing the constructors of an opaque type adds to it; the
        // compiler compares constructors in order.
        let set_changed = constructors.added.len() + constructors.removed.len() > before;
        if (set_changed && !opaque_before) || (!set_changed && order(&old.cases) != order(&new.cases)) {
            self.diff.types.changed.push(old.name.clone());
        }
        for (tag, old_args) in &old_tags {
            let Some(new_args) = new_tags.get(tag) else { continue };
            if old_args.len() != new_args.len() {
                self.diff.constructors.changed.push(tag.to_string());
            } else {
                self.warn(tag, constructor(tag, old_args), constructor(tag, new_args));
            }
        }
    }

    fn finish(mut self) -> ModuleDiff {
        let needs = self.diff.names().into_iter().map(|(needs, _)| needs).max();
        self.diff.magnitude = needs.unwrap_or(Magnitude::Patch);
        self.diff
    }
}

fn diff_module(old: &Module, new: &Module, warnings: &mut Vec<Warning>) -> ModuleDiff {
    let mut compare = ModuleCompare {
        module: &new.name,
        diff: ModuleDiff::default(),
        warnings,
    };
    compare.values(&old.values, &new.values);
    compare.operators(&old.binops, &new.binops);
    compare.aliases(&old.aliases, &new.aliases);
    compare.types(&old.unions, &new.unions);
    compare.finish()
}

fn signature(name: &str, tipe: &str) -> String {
    format!("{name} : {tipe}")
}

fn alias(alias: &Alias) -> String {
    let args: String = alias.args.iter().map(|arg| format!(" {arg}")).collect();
    format!("type alias {}{args} = {}", alias.name, alias.tipe)
}

fn union_head(union: &Union) -> String {
    let args: String = union.args.iter().map(|arg| format!(" {arg}")).collect();
    format!("type {}{args}", union.name)
}

fn constructor(tag: &str, args: &[String]) -> String {
    let args: String = args.iter().map(|arg| format!(" {arg}")).collect();
    format!("{tag}{args}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docs::of_module;

    fn docs(modules: &[(&str, &str)]) -> Docs {
        let modules = modules.iter().map(|(name, body)| {
            let source = format!("module {name} exposing (..)\n{body}");
            (name.to_string(), of_module(name, &source).unwrap())
        });
        Docs {
            modules: modules.collect(),
        }
    }

    fn between(old: &str, new: &str) -> ApiDiff {
        diff(&docs(&[("M", old)]), &docs(&[("M", new)]))
    }

    #[test]
    fn modules_added_need_a_minor_version_and_modules_removed_a_major_one() {
        let one = docs(&[("A", "")]);
        let two = docs(&[("A", ""), ("B", "")]);
        let added = diff(&one, &two);
        assert_eq!(
            (added.magnitude, added.added.as_slice()),
            (Magnitude::Minor, &["B".to_string()][..])
        );
        let removed = diff(&two, &one);
        assert_eq!(
            (removed.magnitude, removed.removed.as_slice()),
            (Magnitude::Major, &["B".to_string()][..])
        );
        assert_eq!(removed.names_needing(Magnitude::Major), ["B"]);
        assert_eq!(diff(&one, &one).magnitude, Magnitude::Patch);
    }

    #[test]
    fn values_added_removed_and_retyped() {
        let added = between("a : Int\na = 1\n", "a : Int\na = 1\nb : Int\nb = 2\n");
        assert_eq!(added.magnitude, Magnitude::Minor);
        assert_eq!(added.changed["M"].values.added, ["b"]);
        let removed = between("a : Int\na = 1\nb : Int\nb = 2\n", "a : Int\na = 1\n");
        assert_eq!(removed.magnitude, Magnitude::Major);
        assert_eq!(removed.names_needing(Magnitude::Major), ["M.b"]);
        // Only the text changed: a warning, and no more than a patch.
        let retyped = between("a : Int\na = 1\n", "a : Basics.Int\na = 1\n");
        assert_eq!(retyped.magnitude, Magnitude::Patch);
        assert!(retyped.changed.is_empty());
        assert_eq!(
            retyped.warnings,
            [Warning {
                module: "M".into(),
                name: "a".into(),
                old: "a : Int".into(),
                new: "a : Basics.Int".into()
            }]
        );
        let commented = between("{-| Old. -}\na : Int\na = 1\n", "{-| New. -}\na : Int\na = 1\n");
        assert_eq!((commented.magnitude, commented.warnings.len()), (Magnitude::Patch, 0));
    }

    #[test]
    fn exposing_the_constructors_of_an_opaque_type_is_an_addition() {
        let opaque = "module M exposing (T)\ntype T = A | B\n";
        let open = "module M exposing (T(..))\ntype T = A | B\n";
        let read = |source: &str| Docs {
            modules: [("M".to_string(), of_module("M", source).unwrap())].into(),
        };
        let exposed = diff(&read(opaque), &read(open));
        assert_eq!(exposed.magnitude, Magnitude::Minor);
        assert_eq!(exposed.changed["M"].constructors.added, ["A", "B"]);
        assert!(exposed.changed["M"].types.changed.is_empty());
        let hidden = diff(&read(open), &read(opaque));
        assert_eq!(hidden.magnitude, Magnitude::Major);
        assert_eq!(hidden.changed["M"].constructors.removed, ["A", "B"]);
        assert_eq!(hidden.changed["M"].types.changed, ["T"]);
    }

    #[test]
    fn any_other_change_of_an_open_types_constructors_needs_a_major_version() {
        let cases = [
            ("type T = A | B\n", "type T = A | B | C\n", "constructor added"),
            ("type T = A | B\n", "type T = B | A\n", "constructors reordered"),
            ("type T = A Int\n", "type T = A Int Int\n", "an argument added"),
            ("type T a = A a\n", "type T a b = A a\n", "a type argument added"),
        ];
        for (old, new, what) in cases {
            let changes = between(old, new);
            assert_eq!(changes.magnitude, Magnitude::Major, "{what}");
            assert!(!changes.names_needing(Magnitude::Major).is_empty(), "{what}");
        }
        assert_eq!(
            between("type T = A Int\n", "type T = A Int Int\n").changed["M"]
                .constructors
                .changed,
            ["A"]
        );
        let retyped = between("type T a = A (List a)\n", "type T b = A (List b)\n");
        assert_eq!(retyped.magnitude, Magnitude::Patch, "renamed type variables");
        let warned: Vec<&str> = retyped.warnings.iter().map(|warning| warning.name.as_str()).collect();
        assert_eq!(warned, ["T", "A"]);
    }

    #[test]
    fn aliases_and_operators_change_by_their_exact_parts() {
        let alias = between("type alias R a = { x : a }\n", "type alias R a b = { x : a }\n");
        assert_eq!(alias.changed["M"].aliases.changed, ["R"]);
        let body = between("type alias R = { x : Int }\n", "type alias R = { x : Int, y : Int }\n");
        assert_eq!(body.magnitude, Magnitude::Patch);
        assert_eq!(body.warnings[0].new, "type alias R = { x : Int, y : Int }");
        let operator = |line: &str| format!("{line}\nadd : Int -> Int -> Int\nadd = x\n");
        let moved = between(&operator("infix left 6 (+) = add"), &operator("infix left 7 (+) = add"));
        assert_eq!(moved.changed["M"].operators.changed, ["+"]);
        assert_eq!(moved.magnitude, Magnitude::Major);
        let flipped = between(
            &operator("infix left 6 (+) = add"),
            &operator("infix right 6 (+) = add"),
        );
        assert_eq!(flipped.magnitude, Magnitude::Major);
    }

    #[test]
    fn version_steps_have_the_magnitude_of_their_largest_part() {
        let v = Version::new;
        assert_eq!(Magnitude::between(v(1, 2, 3), v(2, 0, 0)), Magnitude::Major);
        assert_eq!(Magnitude::between(v(1, 2, 3), v(1, 3, 0)), Magnitude::Minor);
        assert_eq!(Magnitude::between(v(1, 2, 3), v(1, 2, 4)), Magnitude::Patch);
        assert_eq!(Magnitude::Major.bump(v(1, 2, 3)), Some(v(2, 0, 0)));
        assert_eq!(Magnitude::Minor.bump(v(1, 2, 3)), Some(v(1, 3, 0)));
        assert_eq!(Magnitude::Patch.bump(v(1, 2, 3)), Some(v(1, 2, 4)));
        assert_eq!(Magnitude::Patch.bump(v(1, 2, u16::MAX)), None);
        assert_eq!(serde_json::to_string(&Magnitude::Major).unwrap(), r#""major""#);
    }
}
