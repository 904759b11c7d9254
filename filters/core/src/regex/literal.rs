//! The literal text every match of a pattern must contain, found at
//! configure time so that a request without it skips the regex (RE2 and
//! Hyperscan filter on such literals too).
//!
//! Istio's `^(.*?;)?(user=jason)(;.*)?$` cannot match a cookie without
//! `user=jason`, and a substring search costs a small part of running the
//! regex. The analysis is conservative: it only reads syntax whose meaning
//! is plain (literal characters, groups, classes, repetition), and gives up
//! on alternation, inline flags and escapes it does not know, which then
//! just leaves the regex to decide.

/// The longest text every match of `pattern` contains, if the pattern's
/// syntax lets that be known. The pattern must already compile.
pub(super) fn required_literal(pattern: &str) -> Option<String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut parser = Parser {
        chars: &chars,
        at: 0,
    };
    let found = parser.sequence()?;
    if parser.at != chars.len() {
        return None;
    }
    found
        .into_iter()
        .max_by_key(String::len)
        .filter(|l| !l.is_empty())
}

struct Parser<'a> {
    chars: &'a [char],
    at: usize,
}

/// One piece of a sequence.
enum Atom {
    /// A character matched as itself.
    Char(char),
    /// A group, with the literals each of its matches contains.
    Group(Vec<String>),
    /// Anything else: a class, `.`, an assertion.
    Other,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    /// A sequence up to `)` or the end: the literals it must contain, or
    /// `None` when it holds an alternation or syntax this does not read.
    fn sequence(&mut self) -> Option<Vec<String>> {
        let mut found = Vec::new();
        let mut run = String::new();
        while let Some(c) = self.peek() {
            if c == ')' {
                break;
            }
            if c == '|' {
                return None;
            }
            let atom = self.atom()?;
            let (min, max) = self.repetition()?;
            match atom {
                Atom::Char(c) if min > 0 => {
                    run.push(c);
                    if max != Some(1) || min > 1 {
                        // More copies may follow: the text so far is whole,
                        // the next starts anew.
                        found.push(std::mem::take(&mut run));
                    }
                }
                Atom::Group(inner) if min > 0 => {
                    found.push(std::mem::take(&mut run));
                    found.extend(inner);
                }
                _ => found.push(std::mem::take(&mut run)),
            }
        }
        found.push(run);
        Some(found)
    }

    fn atom(&mut self) -> Option<Atom> {
        let c = self.peek()?;
        self.at += 1;
        match c {
            '(' => {
                if self.peek() == Some('?') {
                    self.at += 1;
                    match self.peek()? {
                        ':' => self.at += 1,
                        'P' | '<' => {
                            // A named group: skip to the name's end.
                            while self.peek()? != '>' {
                                self.at += 1;
                            }
                            self.at += 1;
                        }
                        // Inline flags could turn case folding or
                        // whitespace-insensitivity on.
                        _ => return None,
                    }
                }
                let inner = self.sequence()?;
                if self.peek()? != ')' {
                    return None;
                }
                self.at += 1;
                Some(Atom::Group(inner))
            }
            '[' => {
                self.class()?;
                Some(Atom::Other)
            }
            '\\' => {
                let e = self.peek()?;
                self.at += 1;
                if e.is_ascii_punctuation() {
                    Some(Atom::Char(e))
                } else if matches!(e, 'd' | 'D' | 'w' | 'W' | 's' | 'S' | 'b' | 'B' | 'A' | 'z') {
                    Some(Atom::Other)
                } else {
                    // \x.., \n, \t, \p{..}: not worth reading here.
                    None
                }
            }
            '.' | '^' | '$' => Some(Atom::Other),
            '*' | '+' | '?' | '{' | ')' | '|' => None,
            c => Some(Atom::Char(c)),
        }
    }

    /// Skips a bracketed class (after its `[`), POSIX classes included
    /// (regex-lite refuses nested classes).
    fn class(&mut self) -> Option<()> {
        if self.peek() == Some('^') {
            self.at += 1;
        }
        // A `]` first is a literal.
        if self.peek() == Some(']') {
            self.at += 1;
        }
        loop {
            let c = self.peek()?;
            self.at += 1;
            match c {
                '\\' => self.at += 1,
                '[' if self.peek() == Some(':') => {
                    while !(self.peek()? == ':' && self.chars.get(self.at + 1) == Some(&']')) {
                        self.at += 1;
                    }
                    self.at += 2;
                }
                '[' => return None,
                ']' => return Some(()),
                _ => {}
            }
        }
    }

    /// The repetition after an atom, as (minimum, maximum); (1, 1) when none.
    fn repetition(&mut self) -> Option<(u32, Option<u32>)> {
        let bounds = match self.peek() {
            Some('*') => (0, None),
            Some('+') => (1, None),
            Some('?') => (0, Some(1)),
            Some('{') => {
                let close = self.chars[self.at..].iter().position(|c| *c == '}')?;
                let inside: String = self.chars[self.at + 1..self.at + close].iter().collect();
                let (min, max) = match inside.split_once(',') {
                    Some((min, "")) => (min.trim().parse().ok()?, None),
                    Some((min, max)) => (min.trim().parse().ok()?, Some(max.trim().parse().ok()?)),
                    None => {
                        let n = inside.trim().parse().ok()?;
                        (n, Some(n))
                    }
                };
                self.at += close;
                (min, max)
            }
            _ => return Some((1, Some(1))),
        };
        self.at += 1;
        // The non-greedy `?` changes which match, not whether.
        if self.peek() == Some('?') {
            self.at += 1;
        }
        Some(bounds)
    }
}

#[cfg(test)]
mod tests {
    use super::required_literal;

    #[test]
    fn finds_the_literal_istio_examples_require() {
        assert_eq!(
            required_literal("^(.*?;)?(user=jason)(;.*)?$").as_deref(),
            Some("user=jason")
        );
        assert_eq!(
            required_literal(r"/api/v[0-9]+/users").as_deref(),
            Some("/users")
        );
        assert_eq!(
            required_literal(r"prefix\.example\.com").as_deref(),
            Some("prefix.example.com")
        );
        assert_eq!(required_literal("(?:abc)+de").as_deref(), Some("abc"));
        assert_eq!(required_literal("xy(?P<name>abc)?").as_deref(), Some("xy"));
    }

    #[test]
    fn gives_up_where_the_text_is_not_certain() {
        for pattern in [
            "a|b",
            "(foo|bar)baz",
            "(?i)jason",
            "x(?i:abc)",
            r"\x41bc",
            r"\n",
            ".*",
            "[abc]+",
        ] {
            assert_eq!(required_literal(pattern), None, "{pattern}");
        }
        // Optional parts are left out.
        assert_eq!(required_literal("abb?c").as_deref(), Some("ab"));
        assert_eq!(required_literal("(abc)*de").as_deref(), Some("de"));
        assert_eq!(required_literal("a{0,3}bc").as_deref(), Some("bc"));
        assert_eq!(required_literal("ab{2}c").as_deref(), Some("ab"));
        assert_eq!(required_literal("[]a]bc").as_deref(), Some("bc"));
        assert_eq!(required_literal("[[:alpha:]]xyz").as_deref(), Some("xyz"));
        assert_eq!(required_literal(r"[\]]xyz").as_deref(), Some("xyz"));
    }
}
