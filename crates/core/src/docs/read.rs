//! Reads one module's documentation from its source, in one pass of the
//! [`Lexer`]: the header (`module`, `port module` or `effect module … where
//! { … }`, then `exposing (…)`), the doc comment after it, then each
//! top-level declaration (the tokens from one at column 1 to the next), of
//! which only headers, annotations, types, ports and `infix` lines are kept.

use super::lex::{Kind, Lexer, Token};
use super::{Alias, Associativity, Binop, DocsError, Module, Union, Value};
use std::collections::BTreeMap;

/// The most tokens kept of one declaration (a header, an annotation, a
/// type): real ones have at most a few hundred. A definition's body is
/// skipped, never kept, whatever its length.
pub const MAX_DECLARATION_TOKENS: usize = 65_536;
/// A module's documentation copies at most this many bytes of text per
/// byte of its source, plus [`MAX_DOCS_SLACK`]: a real one copies less than
/// one (its comments and types, once each).
pub const MAX_DOCS_PER_SOURCE_BYTE: usize = 2;
pub const MAX_DOCS_SLACK: usize = 64 * 1024;

/// What a module's header exposes.
enum Exposing<'s> {
    /// `exposing (..)`
    Everything,
    Listed(Vec<Exposed<'s>>),
}

enum Exposed<'s> {
    Value(&'s str),
    Operator(&'s str),
    /// A type or an alias; `open` when followed by `(..)`.
    Type {
        name: &'s str,
        open: bool,
    },
}

struct Infix<'s> {
    associativity: Associativity,
    precedence: u8,
    function: &'s str,
}

/// Every top-level declaration of the module, documented.
#[derive(Default)]
struct Declared<'s> {
    values: BTreeMap<&'s str, Value>,
    unions: BTreeMap<&'s str, Union>,
    aliases: BTreeMap<&'s str, Alias>,
    infixes: BTreeMap<&'s str, Infix<'s>>,
}

/// The module `name`'s documentation, from its source.
pub(super) fn module(name: &str, source: &str) -> Result<Module, DocsError> {
    let mut chunks = Chunks::new(name, source);
    let no_header = || DocsError::NoHeader {
        module: name.to_string(),
    };
    let first = chunks.start().ok_or_else(no_header)?;
    let mut header = vec![first];
    header.extend(chunks.rest(first)?);
    let exposing = read_header(name, source, &header)?;
    let mut comment = String::new();
    if let Some(doc) = chunks
        .next
        .filter(|token| token.line_start && matches!(token.kind, Kind::Doc { .. }))
    {
        comment = doc_comment(source, doc);
        chunks.start();
        chunks.skip();
    }
    let declared = declarations(&mut chunks)?;
    document(name, source, comment, exposing, declared)
}

// ---------------------------------------------------------------------------
// Top-level chunks
// ---------------------------------------------------------------------------

/// The tokens of a module, a top-level declaration at a time.
struct Chunks<'s> {
    module: &'s str,
    source: &'s str,
    lexer: Lexer<'s>,
    next: Option<Token>,
}

impl<'s> Chunks<'s> {
    fn new(module: &'s str, source: &'s str) -> Chunks<'s> {
        let mut lexer = Lexer::new(source);
        let next = lexer.next();
        Chunks {
            module,
            source,
            lexer,
            next,
        }
    }

    fn advance(&mut self) -> Option<Token> {
        let token = self.next;
        self.next = self.lexer.next();
        token
    }

    /// The first token of the next declaration (tokens indented before the
    /// first one are passed over).
    fn start(&mut self) -> Option<Token> {
        self.skip();
        self.advance()
    }

    /// The next token of the current declaration, if it has one more.
    fn peek(&self) -> Option<Token> {
        self.next.filter(|token| !token.line_start)
    }

    /// The rest of the current declaration, whose first token is `first`.
    fn rest(&mut self, first: Token) -> Result<Vec<Token>, DocsError> {
        let mut tokens = Vec::new();
        while self.peek().is_some() {
            if tokens.len() == MAX_DECLARATION_TOKENS {
                return Err(DocsError::TooLong {
                    module: self.module.to_string(),
                    line: 1 + self.source[..first.start].matches('\n').count(),
                });
            }
            tokens.extend(self.advance());
        }
        Ok(tokens)
    }

    fn skip(&mut self) {
        while self.peek().is_some() {
            self.advance();
        }
    }
}

// ---------------------------------------------------------------------------
// The header
// ---------------------------------------------------------------------------

fn read_header<'s>(module: &str, source: &'s str, tokens: &[Token]) -> Result<Exposing<'s>, DocsError> {
    let no_header = || DocsError::NoHeader {
        module: module.to_string(),
    };
    let is = |index: usize, kind: Kind, text: &str| tokens.get(index).is_some_and(|token| token.is(source, kind, text));
    let effects = usize::from(is(0, Kind::Lower, "port") || is(0, Kind::Lower, "effect"));
    if !is(effects, Kind::Lower, "module") {
        return Err(no_header());
    }
    let name = tokens
        .get(effects + 1)
        .filter(|token| token.kind == Kind::Upper)
        .ok_or_else(no_header)?
        .text(source);
    if name != module {
        return Err(DocsError::WrongName {
            module: module.to_string(),
            header: name.to_string(),
        });
    }
    // An effect module's `where { command = MyCmd }` comes before it.
    let exposing = (effects + 2..tokens.len())
        .find(|&index| is(index, Kind::Lower, "exposing"))
        .ok_or_else(no_header)?;
    exposed(source, &tokens[exposing + 1..]).ok_or_else(no_header)
}

/// `(..)` or `(name, (op), Type, Type(..), …)`.
fn exposed<'s>(source: &'s str, tokens: &[Token]) -> Option<Exposing<'s>> {
    let is = |index: usize, kind: Kind, text: &str| tokens.get(index).is_some_and(|token| token.is(source, kind, text));
    let open_privacy = |index: usize| {
        is(index, Kind::Open, "(") && is(index + 1, Kind::Symbol, "..") && is(index + 2, Kind::Close, ")")
    };
    if open_privacy(0) {
        return Some(Exposing::Everything);
    }
    if !is(0, Kind::Open, "(") {
        return None;
    }
    let mut listed = Vec::new();
    let mut index = 1;
    loop {
        let token = tokens.get(index)?;
        match token.kind {
            Kind::Lower => {
                listed.push(Exposed::Value(token.text(source)));
                index += 1;
            }
            Kind::Upper => {
                let open = open_privacy(index + 1);
                listed.push(Exposed::Type {
                    name: token.text(source),
                    open,
                });
                index += if open { 4 } else { 1 };
            }
            Kind::Open if is(index + 2, Kind::Close, ")") && tokens[index + 1].kind == Kind::Symbol => {
                listed.push(Exposed::Operator(tokens[index + 1].text(source)));
                index += 3;
            }
            _ => return None,
        }
        match tokens.get(index)?.kind {
            Kind::Comma => index += 1,
            Kind::Close => return Some(Exposing::Listed(listed)),
            _ => return None,
        }
    }
}

// ---------------------------------------------------------------------------
// Declarations
// ---------------------------------------------------------------------------

fn declarations<'s>(chunks: &mut Chunks<'s>) -> Result<Declared<'s>, DocsError> {
    let source = chunks.source;
    let mut declared = Declared::default();
    // The doc comment just before a declaration is that declaration's.
    let mut doc: Option<Token> = None;
    while let Some(first) = chunks.start() {
        let comment = || doc.map(|doc| doc_comment(source, doc)).unwrap_or_default();
        let keyword = (first.kind == Kind::Lower).then(|| first.text(source));
        match keyword {
            _ if matches!(first.kind, Kind::Doc { .. }) => {
                chunks.skip();
                doc = Some(first);
                continue;
            }
            Some("type") => {
                let tokens = chunks.rest(first)?;
                declare_type(source, &tokens, comment(), &mut declared);
            }
            Some("port") => {
                let tokens = chunks.rest(first)?;
                if let [name, colon, tipe @ ..] = &tokens[..]
                    && name.kind == Kind::Lower
                    && colon.is(source, Kind::Symbol, ":")
                {
                    declared.values.insert(
                        name.text(source),
                        value(name.text(source), comment(), text(source, tipe)),
                    );
                }
            }
            Some("infix") => {
                let tokens = chunks.rest(first)?;
                if let Some((operator, infix)) = infix(source, &tokens) {
                    declared.infixes.insert(operator, infix);
                }
            }
            Some("import") | None => chunks.skip(),
            Some(name) if chunks.peek().is_some_and(|next| next.is(source, Kind::Symbol, ":")) => {
                let tokens = chunks.rest(first)?;
                declared
                    .values
                    .insert(name, value(name, comment(), text(source, &tokens[1..])));
            }
            Some(name) => {
                // A definition: its body is passed over. It is documented
                // here only when it has no annotation before it.
                chunks.skip();
                declared
                    .values
                    .entry(name)
                    .or_insert_with(|| value(name, comment(), String::new()));
            }
        }
        doc = None;
    }
    Ok(declared)
}

fn value(name: &str, comment: String, tipe: String) -> Value {
    Value {
        name: name.to_string(),
        comment,
        tipe,
    }
}

/// `type Name args = Tag args | …` or `type alias Name args = type`, without
/// the `type`.
fn declare_type<'s>(source: &'s str, tokens: &[Token], comment: String, declared: &mut Declared<'s>) {
    let alias = tokens
        .first()
        .is_some_and(|token| token.is(source, Kind::Lower, "alias"));
    let tokens = &tokens[usize::from(alias)..];
    let Some(name) = tokens.first().filter(|token| token.kind == Kind::Upper) else {
        return;
    };
    let args: Vec<String> = tokens[1..]
        .iter()
        .take_while(|token| token.kind == Kind::Lower)
        .map(|token| token.text(source).to_string())
        .collect();
    if !tokens
        .get(1 + args.len())
        .is_some_and(|token| token.is(source, Kind::Symbol, "="))
    {
        return;
    }
    let body = &tokens[2 + args.len()..];
    let name = name.text(source);
    if alias {
        let tipe = text(source, body);
        declared.aliases.insert(
            name,
            Alias {
                name: name.to_string(),
                comment,
                args,
                tipe,
            },
        );
    } else {
        let cases = split(body, |token| token.is(source, Kind::Symbol, "|"))
            .filter_map(|variant| {
                let (tag, rest) = variant.split_first()?;
                let args = terms(rest).map(|term| text(source, term)).collect();
                (tag.kind == Kind::Upper).then(|| (tag.text(source).to_string(), args))
            })
            .collect();
        declared.unions.insert(
            name,
            Union {
                name: name.to_string(),
                comment,
                args,
                cases,
            },
        );
    }
}

/// `infix left 6 (+) = add`, without the `infix`.
fn infix<'s>(source: &'s str, tokens: &[Token]) -> Option<(&'s str, Infix<'s>)> {
    let [associativity, precedence, open, operator, close, equals, function] = tokens else {
        return None;
    };
    let associativity = match associativity.text(source) {
        "left" => Associativity::Left,
        "non" => Associativity::Non,
        "right" => Associativity::Right,
        _ => return None,
    };
    let shaped = open.is(source, Kind::Open, "(")
        && operator.kind == Kind::Symbol
        && close.is(source, Kind::Close, ")")
        && equals.is(source, Kind::Symbol, "=")
        && function.kind == Kind::Lower
        && precedence.kind == Kind::Literal;
    let precedence = precedence.text(source).parse().ok().filter(|_| shaped)?;
    Some((
        operator.text(source),
        Infix {
            associativity,
            precedence,
            function: function.text(source),
        },
    ))
}

/// The parts of `tokens` between the separators outside brackets.
fn split(tokens: &[Token], separator: impl Fn(&Token) -> bool) -> impl Iterator<Item = &[Token]> {
    let mut depth = 0usize;
    tokens.split(move |token| {
        depth = nest(depth, token);
        depth == 0 && separator(token)
    })
}

/// The bracket depth after `token`.
fn nest(depth: usize, token: &Token) -> usize {
    match token.kind {
        Kind::Open => depth + 1,
        Kind::Close => depth.saturating_sub(1),
        _ => depth,
    }
}

/// A constructor's arguments: each name outside brackets, or bracketed
/// group, is one type.
fn terms(tokens: &[Token]) -> impl Iterator<Item = &[Token]> {
    let mut depth = 0usize;
    let mut start = 0;
    let mut index = 0;
    std::iter::from_fn(move || {
        while index < tokens.len() {
            depth = nest(depth, &tokens[index]);
            index += 1;
            if depth == 0 {
                let term = &tokens[start..index];
                start = index;
                return Some(term);
            }
        }
        // An unclosed bracket: the rest is one (broken) type.
        (start < tokens.len()).then(|| {
            let term = &tokens[start..];
            start = tokens.len();
            term
        })
    })
}

/// The source of `tokens` with comments removed and each space between
/// them one space.
fn text(source: &str, tokens: &[Token]) -> String {
    let mut out = String::new();
    let mut previous: Option<&Token> = None;
    for token in tokens.iter().filter(|token| !matches!(token.kind, Kind::Doc { .. })) {
        if previous.is_some_and(|previous| previous.end < token.start) {
            out.push(' ');
        }
        out.push_str(token.text(source));
        previous = Some(token);
    }
    out
}

/// A doc comment's text as the compiler keeps it: carriage returns dropped.
fn doc_comment(source: &str, doc: Token) -> String {
    doc.doc_text(source).replace('\r', "")
}

// ---------------------------------------------------------------------------
// What is exposed
// ---------------------------------------------------------------------------

fn document(
    name: &str,
    source: &str,
    comment: String,
    exposing: Exposing,
    declared: Declared,
) -> Result<Module, DocsError> {
    let mut docs = Module {
        name: name.to_string(),
        comment,
        unions: Vec::new(),
        aliases: Vec::new(),
        values: Vec::new(),
        binops: Vec::new(),
    };
    let undeclared = |what: &str| DocsError::Undeclared {
        module: name.to_string(),
        name: what.to_string(),
    };
    let listed = match exposing {
        Exposing::Listed(listed) => listed,
        Exposing::Everything => everything(&declared),
    };
    let mut budget = Budget {
        left: MAX_DOCS_PER_SOURCE_BYTE * source.len() + MAX_DOCS_SLACK,
        module: name,
    };
    // An exposing list may repeat a name: each is documented once.
    let mut seen = std::collections::HashSet::new();
    for exposed in listed {
        let (Exposed::Value(key) | Exposed::Operator(key) | Exposed::Type { name: key, .. }) = exposed;
        if !seen.insert((std::mem::discriminant(&exposed), key)) {
            continue;
        }
        match exposed {
            Exposed::Value(value) => {
                let value = declared.values.get(value).ok_or_else(|| undeclared(value))?;
                budget.take(&[&value.name, &value.comment, &value.tipe])?;
                docs.values.push(value.clone());
            }
            Exposed::Operator(operator) => {
                let binop = binop(&declared, operator, &mut budget)?.ok_or_else(|| undeclared(operator))?;
                docs.binops.push(binop);
            }
            Exposed::Type { name, open } => match (declared.unions.get(name), declared.aliases.get(name)) {
                (Some(union), _) => {
                    let cases = if open { &union.cases[..] } else { &[] };
                    let types = cases.iter().flat_map(|(tag, args)| std::iter::once(tag).chain(args));
                    budget.take(&[&union.name, &union.comment])?;
                    budget.take(&types.collect::<Vec<_>>())?;
                    docs.unions.push(Union {
                        cases: cases.to_vec(),
                        ..union.clone()
                    });
                }
                (None, Some(alias)) => {
                    budget.take(&[&alias.name, &alias.comment, &alias.tipe])?;
                    docs.aliases.push(alias.clone());
                }
                (None, None) => return Err(undeclared(name)),
            },
        }
    }
    sort_by_name(&mut docs.unions, |union| &union.name);
    sort_by_name(&mut docs.aliases, |alias| &alias.name);
    sort_by_name(&mut docs.values, |value| &value.name);
    sort_by_name(&mut docs.binops, |binop| &binop.name);
    Ok(docs)
}

/// What `exposing (..)` exposes: every top-level declaration.
fn everything<'s>(declared: &Declared<'s>) -> Vec<Exposed<'s>> {
    let values = declared.values.keys().map(|&name| Exposed::Value(name));
    let operators = declared.infixes.keys().map(|&name| Exposed::Operator(name));
    let unions = declared.unions.keys().map(|&name| Exposed::Type { name, open: true });
    let aliases = declared.aliases.keys().map(|&name| Exposed::Type { name, open: false });
    values.chain(operators).chain(unions).chain(aliases).collect()
}

/// The text the documentation of a module may copy out of its source:
/// operators naming the same function each copy its comment, so without
/// it a crafted module could make its documentation quadratic in its size.
struct Budget<'n> {
    left: usize,
    module: &'n str,
}

impl Budget<'_> {
    fn take(&mut self, texts: &[&String]) -> Result<(), DocsError> {
        let size: usize = texts.iter().map(|text| text.len()).sum();
        self.left = self.left.checked_sub(size).ok_or_else(|| DocsError::TooLarge {
            module: self.module.to_string(),
        })?;
        Ok(())
    }
}

/// An operator, documented by the function it names.
fn binop(declared: &Declared, operator: &str, budget: &mut Budget) -> Result<Option<Binop>, DocsError> {
    let Some(infix) = declared.infixes.get(operator) else {
        return Ok(None);
    };
    let Some(function) = declared.values.get(infix.function) else {
        return Ok(None);
    };
    budget.take(&[&function.comment, &function.tipe])?;
    Ok(Some(Binop {
        name: operator.to_string(),
        comment: function.comment.clone(),
        tipe: function.tipe.clone(),
        associativity: infix.associativity,
        precedence: infix.precedence,
    }))
}

fn sort_by_name<T>(items: &mut [T], name: impl Fn(&T) -> &String) {
    items.sort_by(|a, b| name(a).cmp(name(b)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(source: &str) -> Module {
        module("M", source).unwrap_or_else(|err| panic!("{err}"))
    }

    fn value<'m>(docs: &'m Module, name: &str) -> &'m Value {
        docs.values.iter().find(|value| value.name == name).unwrap()
    }

    #[test]
    fn nested_comments_and_strings_holding_comment_markers_are_read_right() {
        let docs = read(concat!(
            "module M exposing (a, b, c)\n",
            "{-| The module. {- nested -} still it -}\n",
            "{- a comment at column 1\n",
            "fake : Int\n",
            "{- nested -} still a comment\n",
            "-}\n",
            "{-| A, with a {- nested -} comment and \"a quote -} inside\" -}\n",
            "a : String\n",
            "a =\n",
            "    \"-} {- {-| --\"\n",
            "\n",
            "{-| B. -}\n",
            "b : Char\n",
            "b = '\"'\n",
            "\n",
            "{-| C. -}\n",
            "c : String\n",
            "c =\n",
            "    \"\"\"\n",
            "{-| not a doc comment -}\n",
            "fake : Int\n",
            "-}\n",
            "\"\"\"\n",
        ));
        assert_eq!(docs.comment, " The module. {- nested -} still it ");
        assert_eq!(docs.values.len(), 3, "{docs:?}");
        // The quote in the comment is text: the comment ends at its own `-}`.
        assert_eq!(
            value(&docs, "a").comment,
            " A, with a {- nested -} comment and \"a quote "
        );
        assert_eq!(value(&docs, "a").tipe, "String");
        assert_eq!(value(&docs, "b").comment, " B. ");
        assert_eq!(value(&docs, "c").comment, " C. ");
        assert_eq!(value(&docs, "c").tipe, "String");
    }

    #[test]
    fn annotations_span_lines_without_their_comments() {
        let docs = read(concat!(
            "module M exposing (f)\n",
            "f :\n",
            "    Int {- the count -}\n",
            "    -> -- trailing\n",
            "       { a : List (Maybe Int)\n",
            "       , b : String }\n",
            "f n = n\n",
        ));
        assert_eq!(value(&docs, "f").tipe, "Int -> { a : List (Maybe Int) , b : String }");
        assert_eq!(value(&docs, "f").comment, "");
    }

    #[test]
    fn custom_types_show_their_constructors_only_when_exposed_with_them() {
        let source = concat!(
            "module M exposing (Open(..), Opaque, Alias)\n",
            // The first doc comment after the header is the module's.
            "{-| The module. -}\n",
            "{-| Open. -}\n",
            "type Open a\n",
            "    = One a (Maybe a) { x : Int }\n",
            "    | Two -- no argument\n",
            "    | Three (Result String (Array a))\n",
            "\n",
            "type Opaque = Hidden Int\n",
            "\n",
            "{-| An alias. -}\n",
            "type alias Alias k =\n",
            "    { key : k }\n",
        );
        let docs = read(source);
        let open = &docs.unions[1];
        assert_eq!((open.name.as_str(), open.comment.as_str()), ("Open", " Open. "));
        assert_eq!(open.args, ["a"]);
        let cases: Vec<(&str, Vec<&str>)> = open
            .cases
            .iter()
            .map(|(tag, args)| (tag.as_str(), args.iter().map(String::as_str).collect()))
            .collect();
        assert_eq!(
            cases,
            [
                ("One", vec!["a", "(Maybe a)", "{ x : Int }"]),
                ("Two", vec![]),
                ("Three", vec!["(Result String (Array a))"]),
            ]
        );
        assert_eq!(docs.unions[0].name, "Opaque");
        assert!(docs.unions[0].cases.is_empty());
        assert_eq!(docs.aliases[0].args, ["k"]);
        assert_eq!(docs.aliases[0].tipe, "{ key : k }");
    }

    #[test]
    fn operators_take_their_type_and_comment_from_the_function_they_name() {
        let docs = read(concat!(
            "module M exposing ((|>), (+), add)\n",
            "\n",
            "infix left  0 (|>) = apR\n",
            "infix left  6 (+) = add\n",
            "\n",
            "{-| Add. -}\n",
            "add : number -> number -> number\n",
            "add = Gren.Kernel.Basics.add\n",
            "\n",
            "{-| Apply. -}\n",
            "apR : a -> (a -> b) -> b\n",
            "apR x f = f x\n",
        ));
        let binops: Vec<(&str, &str, &str, Associativity, u8)> = docs
            .binops
            .iter()
            .map(|b| {
                (
                    b.name.as_str(),
                    b.comment.as_str(),
                    b.tipe.as_str(),
                    b.associativity,
                    b.precedence,
                )
            })
            .collect();
        assert_eq!(
            binops,
            [
                ("+", " Add. ", "number -> number -> number", Associativity::Left, 6),
                ("|>", " Apply. ", "a -> (a -> b) -> b", Associativity::Left, 0),
            ]
        );
        assert_eq!(docs.values.len(), 1, "apR is not exposed: {docs:?}");
    }

    #[test]
    fn port_and_effect_module_headers_are_read() {
        let docs = read(concat!(
            "port module M exposing (send, Msg(..))\n",
            "{-| Ports. -}\n",
            "import Json.Encode\n",
            "{-| Sends. -}\n",
            "port send : Json.Encode.Value -> Cmd msg\n",
            "type Msg = Got String\n",
        ));
        assert_eq!(docs.comment, " Ports. ");
        assert_eq!(value(&docs, "send").tipe, "Json.Encode.Value -> Cmd msg");
        assert_eq!(value(&docs, "send").comment, " Sends. ");
        assert_eq!(docs.unions[0].cases, [("Got".to_string(), vec!["String".to_string()])]);
        let docs = read(concat!(
            "effect module M where { command = MyCmd, subscription = MySub } exposing\n",
            "    ( perform -- a comment\n",
            "    , MyCmd\n",
            "    )\n",
            "type MyCmd msg = Perform msg\n",
            "perform : msg -> Cmd msg\n",
            "perform = Debug.todo \"\"\n",
        ));
        assert_eq!(docs.names().collect::<Vec<_>>(), ["MyCmd", "perform"]);
        assert!(docs.unions[0].cases.is_empty());
    }

    #[test]
    fn exposing_everything_documents_every_top_level_declaration() {
        let docs = read(concat!(
            "module M exposing (..)\n",
            "import Basics exposing (..)\n",
            "infix right 5 (++) = append\n",
            "type T = A | B\n",
            "type alias R = {}\n",
            "append : a -> a -> a\n",
            "append = x\n",
            "unannotated n =\n",
            "    n\n",
        ));
        assert_eq!(
            docs.names().collect::<Vec<_>>(),
            ["T", "R", "append", "unannotated", "++"]
        );
        assert_eq!(docs.unions[0].cases.len(), 2);
        assert_eq!(value(&docs, "unannotated").tipe, "");
    }

    #[test]
    fn a_doc_comment_belongs_to_the_declaration_right_after_it() {
        let docs = read(concat!(
            "module M exposing (a, b)\r\n",
            "\r\n",
            "{-| Header\r\nline. -}\r\n",
            "\r\n",
            "{-| Lost: an import follows. -}\r\n",
            "import Dict\r\n",
            "a : Int\r\n",
            "a = 1\r\n",
            "{-| B. -}\r\n",
            "b = 2\r\n",
        ));
        assert_eq!(docs.comment, " Header\nline. ", "carriage returns are dropped");
        assert_eq!(value(&docs, "a").comment, "");
        assert_eq!(value(&docs, "a").tipe, "Int");
        assert_eq!(value(&docs, "b").comment, " B. ");
    }

    #[test]
    fn a_name_exposed_twice_is_documented_once() {
        let docs = read("module M exposing (a, a, T, T(..))\ntype T = T\na : Int\na = 1\n");
        assert_eq!(docs.names().collect::<Vec<_>>(), ["T", "a"]);
        assert!(docs.unions[0].cases.is_empty(), "the first mention decides");
    }

    #[test]
    fn sources_the_compiler_would_refuse_are_errors() {
        let error = |source: &str| module("M", source).unwrap_err().to_string();
        assert!(error("").contains("does not start with `module M exposing"));
        assert!(error("import M\n").contains("does not start with"));
        assert!(error("module M exposing\n").contains("does not start with"));
        assert!(error("module M exposing (a\n").contains("does not start with"));
        assert!(error("module N exposing (a)\n").contains("header names the module N"));
        assert!(error("module M exposing (a)\n").contains("a is exposed but not declared"));
        assert!(error("module M exposing ((+))\n").contains("+ is exposed but not declared"));
        assert!(error("module M exposing ((+))\ninfix left 6 (+) = add\n").contains("+ is exposed"));
        assert!(error("module M exposing (T)\n").contains("T is exposed"));
    }

    #[test]
    fn a_declaration_past_the_token_cap_is_refused_and_a_long_body_is_not() {
        let long_type = format!(
            "module M exposing (a)\n\na : {}Int\n",
            "Int -> ".repeat(MAX_DECLARATION_TOKENS)
        );
        assert!(matches!(
            module("M", &long_type),
            Err(DocsError::TooLong { line: 3, .. })
        ));
        let long_body = format!(
            "module M exposing (a)\na : Int\na =\n{}    0\n",
            "    0 +\n".repeat(MAX_DECLARATION_TOKENS)
        );
        assert_eq!(read(&long_body).values[0].tipe, "Int");
    }

    #[test]
    fn operators_sharing_a_function_cannot_multiply_its_comment_past_the_budget() {
        let operators: Vec<String> = (1..=200).map(|n| "+".repeat(n)).collect();
        let exposing: Vec<String> = operators.iter().map(|op| format!("({op})")).collect();
        let infixes: String = operators
            .iter()
            .map(|op| format!("infix left 6 ({op}) = add\n"))
            .collect();
        let source = format!(
            "module M exposing ({})\n{infixes}{{-|{}-}}\nadd : Int\nadd = 1\n",
            exposing.join(", "),
            "x".repeat(MAX_DOCS_SLACK)
        );
        assert!(matches!(module("M", &source), Err(DocsError::TooLarge { .. })));
        let few = source.replace(&infixes, "infix left 6 (+) = add\n");
        let few = few.replacen(&exposing.join(", "), "(+)", 1);
        assert_eq!(read(&few).binops.len(), 1);
    }
}
