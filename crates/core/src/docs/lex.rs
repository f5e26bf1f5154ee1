//! The tokens of a Gren source, in one pass over its bytes: names, operator
//! symbols, brackets, commas, literals and documentation comments. Spaces,
//! line comments (`--`) and block comments (`{- -}`, nesting) are skipped;
//! a string (`"…"`, `"""…"""`) or a character (`'…'`) is one literal, so
//! comment markers inside them are text. Inside a comment, as in the
//! compiler (`Parse.Space.eatMultiCommentHelp`), only `{-` and `-}` count:
//! quotes there are plain text.
//!
//! Every byte is looked at a bounded number of times (the lexer never goes
//! back), and nothing is allocated: a token is its kind and byte range.

/// What a token is; its text is `source[start..end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// A name starting with a lower-case letter, maybe qualified
    /// (`map`, `Dict.empty`, `record.field`); keywords are lower names too.
    Lower,
    /// A name whose last part starts with an upper-case letter (`Dict.Dict`).
    Upper,
    /// A run of operator characters: `=`, `:`, `|`, `->`, `..`, `++`.
    Symbol,
    /// `(`, `[` or `{`.
    Open,
    /// `)`, `]` or `}`.
    Close,
    Comma,
    /// A number, string or character literal.
    Literal,
    /// `{-| … -}`: its text is between the `{-|` and the closing `-}`
    /// (to the end of the source when it is never closed).
    Doc {
        closed: bool,
    },
    /// Any other character (a backslash, a backtick, a stray symbol).
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Token {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
    /// Whether the token starts its line (column 1, where top-level
    /// declarations start).
    pub line_start: bool,
}

impl Token {
    pub fn text<'s>(&self, source: &'s str) -> &'s str {
        &source[self.start..self.end]
    }

    /// The text of a documentation comment, without its markers.
    pub fn doc_text<'s>(&self, source: &'s str) -> &'s str {
        let end = match self.kind {
            Kind::Doc { closed: true } => self.end - 2,
            _ => self.end,
        };
        &source[self.start + 3..end]
    }

    pub fn is(&self, source: &str, kind: Kind, text: &str) -> bool {
        self.kind == kind && self.text(source) == text
    }
}

/// The characters the compiler's `Parse.Symbol` allows in operators.
fn is_operator(byte: u8) -> bool {
    b"+-/*=.<>:&|^?%!".contains(&byte)
}

pub(super) struct Lexer<'s> {
    source: &'s str,
    bytes: &'s [u8],
    pos: usize,
}

impl<'s> Lexer<'s> {
    pub fn new(source: &'s str) -> Lexer<'s> {
        Lexer {
            source,
            bytes: source.as_bytes(),
            pos: 0,
        }
    }

    fn at(&self, offset: usize) -> Option<u8> {
        self.bytes.get(self.pos + offset).copied()
    }

    fn starts_with(&self, text: &[u8]) -> bool {
        self.bytes[self.pos..].starts_with(text)
    }

    /// The character at the position (the source is UTF-8, and the lexer
    /// only stops on character boundaries).
    fn char(&self) -> char {
        self.source[self.pos..].chars().next().unwrap_or('\0')
    }

    /// Skips spaces and comments; false at the end of the source.
    fn skip_space(&mut self) -> bool {
        while let Some(byte) = self.at(0) {
            match byte {
                b' ' | b'\n' | b'\r' | b'\t' => self.pos += 1,
                b'-' if self.at(1) == Some(b'-') => {
                    self.pos = memchr(b'\n', &self.bytes[self.pos..]).map_or(self.bytes.len(), |at| self.pos + at);
                }
                b'{' if self.at(1) == Some(b'-') && self.at(2) != Some(b'|') => {
                    self.pos += 2;
                    self.block_comment();
                }
                _ => return true,
            }
        }
        false
    }

    /// From just inside a `{-` (or `{-|`): to just after its `-}`, nested
    /// comments included; whether it was closed.
    fn block_comment(&mut self) -> bool {
        let mut depth = 1u64;
        while let Some(byte) = self.at(0) {
            if byte == b'-' && self.at(1) == Some(b'}') {
                self.pos += 2;
                depth -= 1;
                if depth == 0 {
                    return true;
                }
            } else if byte == b'{' && self.at(1) == Some(b'-') {
                self.pos += 2;
                depth += 1;
            } else {
                self.pos += 1;
            }
        }
        false
    }

    /// From just inside the opening quote: to just after the closing one.
    /// A one-line string or a character stops at the end of its line when
    /// it is not closed (the compiler refuses it; the rest stays readable).
    fn quoted(&mut self, quote: &[u8], multiline: bool) {
        while let Some(byte) = self.at(0) {
            if byte == b'\\' {
                self.pos += 1;
                if self.at(0).is_some_and(|next| next != b'\n' || multiline) {
                    self.pos += 1;
                }
            } else if self.starts_with(quote) {
                self.pos += quote.len();
                return;
            } else if byte == b'\n' && !multiline {
                return;
            } else {
                self.pos += 1;
            }
        }
    }

    fn name(&mut self) -> Kind {
        let mut upper = self.char().is_uppercase();
        self.name_part();
        // A qualified name: `Dict.Dict`, `Json.Decode.field`.
        while self.at(0) == Some(b'.') && self.source[self.pos + 1..].starts_with(char::is_alphabetic) {
            self.pos += 1;
            upper = self.char().is_uppercase();
            self.name_part();
        }
        if upper { Kind::Upper } else { Kind::Lower }
    }

    fn name_part(&mut self) {
        while let Some(byte) = self.at(0) {
            if byte.is_ascii_alphanumeric() || byte == b'_' {
                self.pos += 1;
            } else if byte >= 0x80 && self.char().is_alphanumeric() {
                self.pos += self.char().len_utf8();
            } else {
                break;
            }
        }
    }

    fn number(&mut self) {
        while let Some(byte) = self.at(0) {
            let fraction = byte == b'.' && self.at(1).is_some_and(|next| next.is_ascii_digit());
            if byte.is_ascii_alphanumeric() || byte == b'_' || fraction {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    /// Reads the token at the position (not a space nor a comment).
    fn token(&mut self) -> Kind {
        let byte = self.bytes[self.pos];
        if byte >= 0x80 {
            if self.char().is_alphabetic() {
                return self.name();
            }
            self.pos += self.char().len_utf8();
            return Kind::Other;
        }
        self.pos += 1;
        match byte {
            b'{' if self.starts_with(b"-|") => {
                self.pos += 2;
                Kind::Doc {
                    closed: self.block_comment(),
                }
            }
            b'(' | b'[' | b'{' => Kind::Open,
            b')' | b']' | b'}' => Kind::Close,
            b',' => Kind::Comma,
            b'"' if self.starts_with(b"\"\"") => {
                self.pos += 2;
                self.quoted(b"\"\"\"", true);
                Kind::Literal
            }
            b'"' => {
                self.quoted(b"\"", false);
                Kind::Literal
            }
            b'\'' => {
                self.quoted(b"'", false);
                Kind::Literal
            }
            b'0'..=b'9' => {
                self.number();
                Kind::Literal
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                self.pos -= 1;
                self.name()
            }
            _ if is_operator(byte) => {
                while self.at(0).is_some_and(is_operator) {
                    self.pos += 1;
                }
                Kind::Symbol
            }
            _ => Kind::Other,
        }
    }
}

impl Iterator for Lexer<'_> {
    type Item = Token;

    fn next(&mut self) -> Option<Token> {
        if !self.skip_space() {
            return None;
        }
        let start = self.pos;
        let kind = self.token();
        Some(Token {
            kind,
            start,
            end: self.pos,
            line_start: start == 0 || self.bytes[start - 1] == b'\n',
        })
    }
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&byte| byte == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(source: &str) -> Vec<(Kind, &str)> {
        Lexer::new(source)
            .map(|token| (token.kind, token.text(source)))
            .collect()
    }

    #[test]
    fn names_symbols_and_brackets_are_tokens() {
        assert_eq!(
            kinds("get : comparable -> Dict.Dict comparable v -> Maybe v"),
            vec![
                (Kind::Lower, "get"),
                (Kind::Symbol, ":"),
                (Kind::Lower, "comparable"),
                (Kind::Symbol, "->"),
                (Kind::Upper, "Dict.Dict"),
                (Kind::Lower, "comparable"),
                (Kind::Lower, "v"),
                (Kind::Symbol, "->"),
                (Kind::Upper, "Maybe"),
                (Kind::Lower, "v"),
            ]
        );
        assert_eq!(
            kinds("Order(..), (//), {a:Int}"),
            vec![
                (Kind::Upper, "Order"),
                (Kind::Open, "("),
                (Kind::Symbol, ".."),
                (Kind::Close, ")"),
                (Kind::Comma, ","),
                (Kind::Open, "("),
                (Kind::Symbol, "//"),
                (Kind::Close, ")"),
                (Kind::Comma, ","),
                (Kind::Open, "{"),
                (Kind::Lower, "a"),
                (Kind::Symbol, ":"),
                (Kind::Upper, "Int"),
                (Kind::Close, "}"),
            ]
        );
    }

    #[test]
    fn comments_nest_and_are_skipped() {
        assert_eq!(kinds("a {- b {- c -} d -} e -- f\ng"), kinds("a e g"));
        assert_eq!(kinds("a {- never closed {- -}"), kinds("a"));
        // `{-}` opens a comment, as in the compiler.
        assert_eq!(kinds("a {-} b -} c"), kinds("a c"));
        // Quotes inside a comment are text: the `"` does not hide the `-}`.
        assert_eq!(
            kinds("a {- \" -} b \" -}"),
            vec![(Kind::Lower, "a"), (Kind::Lower, "b"), (Kind::Literal, "\" -}")]
        );
    }

    #[test]
    fn literals_hide_comment_markers() {
        let source = "a \"-} {- --\" '\"' '\\'' \"\"\"\n{- \"\n-}\"\"\" b \"\\\"{-\" c";
        let tokens = kinds(source);
        assert_eq!(tokens.len(), 8, "{tokens:?}");
        assert_eq!(tokens[1], (Kind::Literal, "\"-} {- --\""));
        assert_eq!(tokens[2], (Kind::Literal, "'\"'"));
        assert_eq!(tokens[3], (Kind::Literal, "'\\''"));
        assert_eq!(tokens[4], (Kind::Literal, "\"\"\"\n{- \"\n-}\"\"\""));
        assert_eq!(tokens[5], (Kind::Lower, "b"));
        assert_eq!(tokens[7], (Kind::Lower, "c"));
    }

    #[test]
    fn doc_comments_are_tokens_with_their_text() {
        let source = "{-| A {- nested -} doc -}\nx";
        let tokens: Vec<Token> = Lexer::new(source).collect();
        assert_eq!(tokens[0].kind, Kind::Doc { closed: true });
        assert_eq!(tokens[0].doc_text(source), " A {- nested -} doc ");
        assert!(tokens[1].line_start && tokens[1].is(source, Kind::Lower, "x"));
        let open = "{-| never closed";
        let token = Lexer::new(open).next().unwrap();
        assert_eq!(token.doc_text(open), " never closed");
    }

    #[test]
    fn unicode_names_and_stray_bytes_are_read_whole() {
        assert_eq!(
            kinds("été → Ünïcode"),
            vec![(Kind::Lower, "été"), (Kind::Other, "→"), (Kind::Upper, "Ünïcode")]
        );
    }
}
