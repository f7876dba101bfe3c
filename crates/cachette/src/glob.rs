//! Glob patterns for [`Backend::keys`](crate::Backend::keys), in the
//! dialect of Redis (`KEYS`, `SCAN MATCH`) so that every backend answers
//! alike:
//!
//! - `*` matches any run of characters (also none),
//! - `?` matches one character,
//! - `[abc]` matches one character of the set, `[^abc]` one not in it
//!   (only `^` negates: `[!a]` is the set of `!` and `a`),
//! - `[a-z]` matches a range, also written reversed (`[z-a]`); a `-` right
//!   before the closing `]` starts a range that ends at `]` (`[a-]`), as in
//!   Redis,
//! - `[]` matches nothing and `[^]` any one character (a `]` right after
//!   `[` or `[^` closes the set),
//! - an unclosed `[` takes the rest of the pattern as its set (`a[bc`
//!   matches `ab` and `ac`, not `a[bc`),
//! - `\x` matches `x` literally, in a set too, so `\*` is a literal star;
//!   a trailing `\` matches itself.
//!
//! Redis compares bytes, this matcher characters: on ASCII they agree;
//! on other text `?` and a set match one character where Redis matches
//! one byte. A pattern of stars alone matches the empty text.
//!
//! [`escape`] turns a literal string (say, a key prefix that contains `*`)
//! into a pattern that matches exactly that string.
//!
//! A [`Pattern`] compiles once and then matches any number of keys; the
//! work of one match is at most the key's length times the number of
//! elements of the pattern (a run of stars counts as one, and a set is
//! searched in logarithmic time), never exponential.

/// Whether `text` matches the glob `pattern` (compiles it each call; a
/// scan over many keys compiles a [`Pattern`] once).
pub fn matches(pattern: &str, text: &str) -> bool {
    Pattern::new(pattern).matches(text)
}

/// A compiled glob pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    tokens: Vec<Token>,
    prefix: String,
}

impl Pattern {
    /// Compiles `pattern` by the rules of the [module docs](self); every
    /// string is a pattern.
    pub fn new(pattern: &str) -> Self {
        Pattern {
            tokens: compile(pattern),
            prefix: literal_prefix(pattern),
        }
    }

    /// Whether `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        // A key without the literal prefix never matches; most keys of a
        // narrowed scan are rejected here without the matcher.
        if !text.starts_with(self.prefix.as_str()) {
            return false;
        }
        let text: Vec<char> = text.chars().collect();
        matches_tokens(&self.tokens, &text)
    }

    /// The pattern's [literal prefix](literal_prefix).
    pub fn literal_prefix(&self) -> &str {
        &self.prefix
    }
}

/// One element of a compiled pattern.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Star,
    AnyOne,
    Literal(char),
    /// Sorted, disjoint inclusive ranges (a single character is a range
    /// of one).
    Set {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Token {
    fn accepts(&self, c: char) -> bool {
        match self {
            Token::Star | Token::AnyOne => true,
            Token::Literal(l) => *l == c,
            Token::Set { negated, ranges } => {
                // The first range that ends at or after `c`.
                let at = ranges.partition_point(|&(_, high)| high < c);
                ranges.get(at).is_some_and(|&(low, _)| low <= c) != *negated
            }
        }
    }
}

/// Compiles a pattern by the rules of the module docs.
fn compile(pattern: &str) -> Vec<Token> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let token = match chars[i] {
            // `**` matches what `*` matches.
            '*' if tokens.last() == Some(&Token::Star) => {
                i += 1;
                continue;
            }
            '*' => Token::Star,
            '?' => Token::AnyOne,
            '[' => {
                let (token, next) = compile_set(&chars, i + 1);
                tokens.push(token);
                i = next;
                continue;
            }
            '\\' if i + 1 < chars.len() => {
                i += 1;
                Token::Literal(chars[i])
            }
            c => Token::Literal(c),
        };
        tokens.push(token);
        i += 1;
    }
    tokens
}

/// Compiles the set that starts at `chars[start]` (after the `[`); returns
/// it and the index after its `]` (or the end of an unclosed set).
fn compile_set(chars: &[char], start: usize) -> (Token, usize) {
    let mut i = start;
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let end = loop {
        if i >= chars.len() {
            break i;
        }
        let rest = chars.len() - i;
        match chars[i] {
            '\\' if rest >= 2 => {
                ranges.push((chars[i + 1], chars[i + 1]));
                i += 2;
            }
            ']' => break i + 1,
            low if rest >= 3 && chars[i + 1] == '-' => {
                let high = chars[i + 2];
                ranges.push((low.min(high), low.max(high)));
                i += 3;
            }
            c => {
                ranges.push((c, c));
                i += 1;
            }
        }
    };
    (
        Token::Set {
            negated,
            ranges: merged(ranges),
        },
        end,
    )
}

/// `ranges` sorted, with overlapping or touching ranges merged.
fn merged(mut ranges: Vec<(char, char)>) -> Vec<(char, char)> {
    ranges.sort_unstable();
    let mut out: Vec<(char, char)> = Vec::with_capacity(ranges.len());
    for (low, high) in ranges {
        match out.last_mut() {
            Some(last) if u32::from(low) <= u32::from(last.1).saturating_add(1) => {
                last.1 = last.1.max(high);
            }
            _ => out.push((low, high)),
        }
    }
    out
}

/// Iterative matching with single-star backtracking: at most
/// `text.len() × tokens.len()` steps.
fn matches_tokens(tokens: &[Token], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last `*`: (token index after it, text index).
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match tokens.get(p) {
            Some(Token::Star) => {
                star = Some((p + 1, t));
                p += 1;
                continue;
            }
            Some(token) if token.accepts(text[t]) => {
                p += 1;
                t += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((star_p, star_t)) => {
                p = star_p;
                t = star_t + 1;
                star = Some((star_p, star_t + 1));
            }
            None => return false,
        }
    }
    tokens[p..].iter().all(|token| *token == Token::Star)
}

/// Escapes the glob characters of a literal, so that `escape(s)` matches
/// exactly `s`.
pub fn escape(literal: &str) -> String {
    let mut out = String::with_capacity(literal.len());
    for c in literal.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^' | '-' | '!') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The literal prefix of a pattern (up to its first unescaped glob
/// character), unescaped. Backends use it to narrow a scan.
pub fn literal_prefix(pattern: &str) -> String {
    let mut out = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' | '?' | '[' => break,
            '\\' => match chars.next() {
                Some(next) => out.push(next),
                None => {
                    out.push('\\');
                    break;
                }
            },
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_and_question_mark() {
        assert!(matches("*", ""));
        assert!(matches("*", "anything"));
        assert!(matches("user:*", "user:1"));
        assert!(!matches("user:*", "session:1"));
        assert!(matches("a?c", "abc"));
        assert!(!matches("a?c", "ac"));
        assert!(matches("*b*d", "abcd"));
        assert!(matches("a*b*c", "aXbYbZc"));
        assert!(!matches("a*b*c", "aXbYbZ"));
        assert!(matches("h?llo", "héllo"));
    }

    #[test]
    fn classes() {
        assert!(matches("h[ae]llo", "hallo"));
        assert!(!matches("h[ae]llo", "hillo"));
        assert!(matches("h[^e]llo", "hallo"));
        assert!(!matches("h[^e]llo", "hello"));
        assert!(matches("k[0-9]", "k7"));
        assert!(!matches("k[0-9]", "kx"));
    }

    #[test]
    fn escaped_literals() {
        assert!(matches(r"a\*b", "a*b"));
        assert!(!matches(r"a\*b", "axb"));
        let prefix = "weird*[pre]?fix:";
        let pattern = format!("{}*", escape(prefix));
        assert!(matches(&pattern, "weird*[pre]?fix:1"));
        assert!(!matches(&pattern, "weirdX[pre]?fix:1"));
        assert!(!matches(&pattern, "weird*p?fix:1"));
        assert_eq!(literal_prefix(&pattern), prefix);
    }

    #[test]
    fn an_unclosed_bracket_takes_the_rest_as_its_set() {
        assert!(!matches("a[b", "a[b"));
        assert!(matches("a[b", "ab"));
        assert!(matches("a[bc", "ac"));
        assert!(!matches("a[bc", "abc"));
    }

    #[test]
    fn only_the_caret_negates_a_set() {
        assert!(matches("[!a]", "!"));
        assert!(matches("[!a]", "a"));
        assert!(!matches("[!a]", "b"));
        assert!(matches("[^a]", "!"));
        assert!(matches("[^a]", "b"));
        assert!(!matches("[^a]", "a"));
    }

    #[test]
    fn ranges_reversed_and_open_ended() {
        assert!(matches("[c-a]", "b"));
        assert!(!matches("[c-a]", "d"));
        // `-` before `]` starts a range up to `]`; the set is then unclosed.
        assert!(matches("[a-]", "^"));
        assert!(!matches("[a-]", "-"));
        assert!(matches(r"[\-a]", "-"));
        assert!(matches(r"[\]]", "]"));
    }

    #[test]
    fn an_empty_set_matches_nothing_and_its_negation_anything() {
        assert!(!matches("[]", "a"));
        assert!(!matches("[]a]", "]a"));
        assert!(matches("[^]", "x"));
        assert!(matches("[^]a]", "xa]"));
    }

    #[test]
    fn a_trailing_backslash_matches_itself() {
        assert!(matches("a\\", "a\\"));
        assert!(!matches("a\\", "a"));
    }

    /// Matching by plain recursion over the tokens: exponential, obviously
    /// right, for short inputs.
    fn by_recursion(tokens: &[Token], text: &[char]) -> bool {
        match tokens.split_first() {
            None => text.is_empty(),
            Some((Token::Star, rest)) => {
                by_recursion(rest, text) || (!text.is_empty() && by_recursion(tokens, &text[1..]))
            }
            Some((token, rest)) => {
                !text.is_empty() && token.accepts(text[0]) && by_recursion(rest, &text[1..])
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn the_matcher_agrees_with_plain_recursion(
            pattern in "[ab*?\\[\\]^-]{0,10}",
            text in "[ab\\[\\]^-]{0,10}",
        ) {
            let compiled = Pattern::new(&pattern);
            let chars: Vec<char> = text.chars().collect();
            proptest::prop_assert_eq!(
                compiled.matches(&text),
                by_recursion(&compiled.tokens, &chars),
                "{:?} against {:?}", pattern, text
            );
        }

        #[test]
        fn a_merged_set_accepts_what_its_ranges_accept(
            ranges in proptest::collection::vec((0x20_u32..0x80, 0_u32..8), 0..8),
            c in 0x18_u32..0x90,
            negated: bool,
        ) {
            let ranges: Vec<(char, char)> = ranges
                .into_iter()
                .filter_map(|(low, len)| Some((char::from_u32(low)?, char::from_u32(low + len)?)))
                .collect();
            let c = char::from_u32(c).unwrap();
            let by_scan = ranges.iter().any(|&(low, high)| (low..=high).contains(&c)) != negated;
            let set = Token::Set { negated, ranges: merged(ranges) };
            proptest::prop_assert_eq!(set.accepts(c), by_scan);
        }
    }

    #[test]
    fn runs_of_stars_compile_to_one() {
        assert_eq!(Pattern::new("a***b").tokens.len(), 3);
        assert!(matches("a***b", "ab"));
        assert!(matches(r"a\**", "a*"));
    }

    /// The input of a hang the fuzzer found in an earlier matcher (a star,
    /// then an unclosed set of 17,000 characters, against 10,000): now a
    /// set lookup is logarithmic and the whole match linear in the key.
    #[test]
    fn a_huge_unclosed_set_after_a_star_is_matched_in_one_pass() {
        let pattern = format!("*[{}", "xyz".repeat(5_700));
        let key = "a".repeat(10_000);
        assert!(!matches(&pattern, &key));
        assert!(matches(&pattern, &format!("{key}y")));
    }
}
