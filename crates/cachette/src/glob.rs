//! Glob patterns for [`Backend::keys`](crate::Backend::keys), with the
//! syntax of Redis `SCAN MATCH` so that every backend answers alike:
//!
//! - `*` matches any run of characters (also none),
//! - `?` matches one character,
//! - `[abc]`, `[a-z]` and `[^abc]` match one character of (or not of) a set,
//! - `\x` matches `x` literally, so `\*` is a literal star.
//!
//! [`escape`] turns a literal string (say, a key prefix that contains `*`)
//! into a pattern that matches exactly that string.

/// Whether `text` matches the glob `pattern`.
pub fn matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    matches_chars(&pattern, &text)
}

/// Iterative matching with single-star backtracking: linear in practice,
/// never exponential.
fn matches_chars(pattern: &[char], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last `*`: (pattern index after it, text index).
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                '*' => {
                    star = Some((p + 1, t));
                    p += 1;
                    continue;
                }
                '?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                '[' => match match_class(pattern, p, text[t]) {
                    Some((true, next)) => {
                        p = next;
                        t += 1;
                        continue;
                    }
                    Some((false, _)) => {}
                    // An unclosed class: `[` stands for itself.
                    None if text[t] == '[' => {
                        p += 1;
                        t += 1;
                        continue;
                    }
                    None => {}
                },
                '\\' if p + 1 < pattern.len() => {
                    if pattern[p + 1] == text[t] {
                        p += 2;
                        t += 1;
                        continue;
                    }
                }
                c => {
                    if c == text[t] {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
            }
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
    pattern[p..].iter().all(|&c| c == '*')
}

/// Matches `c` against the class that opens at `pattern[open]`. Returns
/// whether it matched and the index after the class, or `None` when the
/// class is not closed (then `[` is taken literally).
fn match_class(pattern: &[char], open: usize, c: char) -> Option<(bool, usize)> {
    let mut i = open + 1;
    let negate = matches!(pattern.get(i), Some('^') | Some('!'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let current = *pattern.get(i)?;
        if current == ']' && !first {
            break;
        }
        first = false;
        let (low, after_low) = if current == '\\' {
            (*pattern.get(i + 1)?, i + 2)
        } else {
            (current, i + 1)
        };
        if pattern.get(after_low) == Some(&'-')
            && pattern.get(after_low + 1).is_some_and(|&h| h != ']')
        {
            let (high, after_high) = if pattern[after_low + 1] == '\\' {
                (*pattern.get(after_low + 2)?, after_low + 3)
            } else {
                (pattern[after_low + 1], after_low + 2)
            };
            let (low, high) = if low <= high {
                (low, high)
            } else {
                (high, low)
            };
            if (low..=high).contains(&c) {
                matched = true;
            }
            i = after_high;
        } else {
            if low == c {
                matched = true;
            }
            i = after_low;
        }
    }
    Some((matched != negate, i + 1))
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
    fn unclosed_bracket_is_literal() {
        assert!(matches("a[b", "a[b"));
    }
}
