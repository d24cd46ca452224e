//! A linear pre-pass over the raw text: comments, strings and bracket balance.
//!
//! A PEG parser reports an unclosed `{` at the end of the file, far from its cause, and an
//! unterminated `/*` as "unexpected `/`". This pass finds those with both ends labelled before
//! the grammar runs. It also bounds nesting depth, which keeps the recursive parser and the AST
//! builder far from the stack limit on adversarial input.

use crate::Span;
use crate::diagnostic::Diagnostic;

/// Deeper nesting of `(`, `[` and `{` than this is rejected.
pub const MAX_NESTING: usize = 64;

/// Scans `text`, returning diagnostics for unterminated comments and strings, unbalanced or
/// mismatched brackets and excessive nesting. An empty result means the parser can run.
pub fn scan(text: &str) -> Vec<Diagnostic> {
    let bytes = text.as_bytes();
    let mut diags = Vec::new();
    let mut stack: Vec<(u8, usize)> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => match find(bytes, i + 2, b"*/") {
                Some(end) => i = end + 2,
                None => {
                    diags.push(
                        Diagnostic::error(
                            "nnc::syntax::unterminated_comment",
                            "unterminated block comment",
                        )
                        .label(Span::new(i, i + 2), "this comment is never closed")
                        .help("close the comment with `*/`"),
                    );
                    return diags;
                }
            },
            b'"' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                if i >= bytes.len() || bytes[i] != b'"' {
                    diags.push(
                        Diagnostic::error(
                            "nnc::syntax::unterminated_string",
                            "unterminated string",
                        )
                        .label(
                            Span::new(start, start + 1),
                            "this string is not closed on its line",
                        )
                        .help("add the closing `\"`; strings cannot span lines"),
                    );
                    return diags;
                }
                i += 1;
            }
            open @ (b'(' | b'[' | b'{') => {
                if stack.len() == MAX_NESTING {
                    diags.push(
                        Diagnostic::error(
                            "nnc::syntax::too_deep",
                            format!("brackets are nested more than {MAX_NESTING} deep"),
                        )
                        .label(Span::new(i, i + 1), "too deep")
                        .help("a .nn file never needs deep nesting; look for runaway brackets"),
                    );
                    return diags;
                }
                stack.push((open, i));
                i += 1;
            }
            close @ (b')' | b']' | b'}') => {
                let expected_open = match close {
                    b')' => b'(',
                    b']' => b'[',
                    _ => b'{',
                };
                match stack.pop() {
                    None => {
                        diags.push(
                            Diagnostic::error(
                                "nnc::syntax::unbalanced",
                                format!("unexpected `{}`", close as char),
                            )
                            .label(Span::new(i, i + 1), "nothing here to close")
                            .help(format!(
                                "remove it, or add the matching `{}` before it",
                                expected_open as char
                            )),
                        );
                        return diags;
                    }
                    // `dense(128 -> relu` then `}` on a later line: the `(` is the mistake.
                    Some((open @ (b'(' | b'['), at))
                        if open != expected_open && text[at..i].contains('\n') =>
                    {
                        diags.push(
                            Diagnostic::error(
                                "nnc::syntax::unclosed",
                                format!("unclosed `{}`", open as char),
                            )
                            .label(Span::new(at, at + 1), "this is never closed")
                            .label(
                                Span::new(i, i + 1),
                                format!("`{}` comes first", close as char),
                            )
                            .help(format!(
                                "add `{}` where it should end",
                                closer(open) as char
                            )),
                        );
                        return diags;
                    }
                    Some((open, at)) if open != expected_open => {
                        diags.push(
                            Diagnostic::error(
                                "nnc::syntax::unbalanced",
                                format!(
                                    "mismatched `{}`: expected `{}`",
                                    close as char,
                                    closer(open) as char
                                ),
                            )
                            .label(
                                Span::new(i, i + 1),
                                format!("expected `{}` here", closer(open) as char),
                            )
                            .label(Span::new(at, at + 1), "to close this")
                            .help(format!(
                                "close `{}` with `{}`",
                                open as char,
                                closer(open) as char
                            )),
                        );
                        return diags;
                    }
                    Some(_) => {}
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    // Report the innermost unclosed bracket: closing it is the likely fix, and the outer ones
    // usually close once it does.
    if let Some(&(open, at)) = stack.last() {
        diags.push(
            Diagnostic::error(
                "nnc::syntax::unclosed",
                format!("unclosed `{}`", open as char),
            )
            .label(Span::new(at, at + 1), "this is never closed")
            .help(format!(
                "add `{}` where it should end",
                closer(open) as char
            )),
        );
    }
    diags
}

/// A `*/` outside any comment, and the last block comment before it that contains a `/*`:
/// the trace of a nested comment, which `.nn` (like C) does not have: `/* a /* b */ c */`
/// ends at the first `*/`, leaving ` c */` to be read as code.
pub struct StrayCloser {
    /// The comment that looks nested, if there is one before the stray `*/`.
    pub nested: Option<Span>,
    pub stray: Span,
}

/// Finds the first `*/` that is outside every comment and string, in one linear pass.
pub fn stray_closer(text: &str) -> Option<StrayCloser> {
    let bytes = text.as_bytes();
    let mut nested = None;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let end = find(bytes, i + 2, b"*/")?;
                if find(&bytes[..end], i + 2, b"/*").is_some() {
                    nested = Some(Span::new(i, end + 2));
                }
                i = end + 2;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'*' if bytes.get(i + 1) == Some(&b'/') => {
                return Some(StrayCloser {
                    nested,
                    stray: Span::new(i, i + 2),
                });
            }
            _ => i += 1,
        }
    }
    None
}

fn closer(open: u8) -> u8 {
    match open {
        b'(' => b')',
        b'[' => b']',
        _ => b'}',
    }
}

fn find(haystack: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(text: &str) -> Vec<&'static str> {
        scan(text).iter().map(|d| d.code).collect()
    }

    #[test]
    fn balanced_text_is_clean() {
        assert!(codes("model a { x: f(1, [2, 3]) } // ( [ {\n/* ) */ \"(\"").is_empty());
    }

    #[test]
    fn finds_each_defect() {
        assert_eq!(codes("/* never"), ["nnc::syntax::unterminated_comment"]);
        assert_eq!(codes("a \"b\n\""), ["nnc::syntax::unterminated_string"]);
        assert_eq!(codes("a )"), ["nnc::syntax::unbalanced"]);
        assert_eq!(codes("f(]"), ["nnc::syntax::unbalanced"]);
        assert_eq!(codes("model a { f("), ["nnc::syntax::unclosed"]);
        assert_eq!(
            scan("model a { f(").first().unwrap().primary_span(),
            Span::new(11, 12)
        );
    }

    #[test]
    fn bounds_nesting() {
        let deep = "[".repeat(MAX_NESTING + 1);
        assert_eq!(codes(&deep), ["nnc::syntax::too_deep"]);
        let ok = format!("{}{}", "[".repeat(MAX_NESTING), "]".repeat(MAX_NESTING));
        assert!(codes(&ok).is_empty());
    }

    #[test]
    fn escaped_quote_stays_in_string() {
        assert!(codes(r#"a "x\"y" b"#).is_empty());
    }
}
