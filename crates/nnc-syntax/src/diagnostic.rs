//! Diagnostics as data, rendered with miette.
//!
//! Every stage reports problems as [`Diagnostic`] values: a stable code
//! (`nnc::shape::dense_rank`), a message, labelled spans and a help line. Rendering is separate
//! ([`render`]), so tests can snapshot the exact text a user sees, and so that pathological input
//! (a 10 MB line, control characters, thousands of errors) is handled in one place.

use std::fmt;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, SourceCode, SourceSpan};

use crate::Span;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

/// One problem found in a `.nn` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// A stable identifier such as `nnc::shape::dense_rank`; tests and tools may match on it.
    pub code: &'static str,
    pub severity: Severity,
    pub message: String,
    /// The first label is the primary one: the place the problem is.
    pub labels: Vec<Label>,
    pub help: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    pub span: Span,
    pub text: String,
}

impl Diagnostic {
    pub fn error(code: &'static str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            labels: Vec::new(),
            help: None,
        }
    }

    pub fn warning(code: &'static str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, message)
        }
    }

    /// Adds a label; the first one added is the primary location.
    pub fn label(mut self, span: Span, text: impl Into<String>) -> Diagnostic {
        self.labels.push(Label {
            span,
            text: text.into(),
        });
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// The primary span, used to order diagnostics by position.
    pub fn primary_span(&self) -> Span {
        self.labels.first().map_or(Span::default(), |l| l.span)
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Quotes user text for a message, shortened so that a 10 MB identifier stays one line.
pub fn quote(text: &str) -> String {
    const MAX: usize = 40;
    let mut out = String::from("`");
    let mut chars = text.chars();
    for c in chars.by_ref().take(MAX) {
        out.extend(c.escape_debug());
    }
    if chars.next().is_some() {
        out.push('…');
    }
    out.push('`');
    out
}

/// How to render diagnostics.
#[derive(Clone, Copy, Debug)]
pub struct RenderOptions {
    pub color: bool,
    /// Terminal width in columns; fixed in tests so snapshots are stable.
    pub width: usize,
    /// Render at most this many diagnostics; the rest are counted.
    pub max_diagnostics: usize,
}

impl Default for RenderOptions {
    fn default() -> RenderOptions {
        RenderOptions {
            color: false,
            width: 100,
            max_diagnostics: 50,
        }
    }
}

/// Renders diagnostics for the file `name` with contents `text`, in source order.
pub fn render(diagnostics: &[Diagnostic], name: &str, text: &str, opts: RenderOptions) -> String {
    let source = SourceView::new(name, text);
    let theme = if opts.color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_width(opts.width)
        .with_links(false)
        .with_context_lines(1);
    let mut out = String::new();
    for diag in diagnostics.iter().take(opts.max_diagnostics) {
        let shown = Shown {
            diag,
            source: &source,
        };
        if handler.render_report(&mut out, &shown).is_err() {
            // The handler only fails if a span is out of bounds, which `Shown` prevents; fall
            // back to a plain line rather than losing the message.
            out.push_str(&format!("{}: {}\n", diag.code, diag.message));
        }
    }
    if diagnostics.len() > opts.max_diagnostics {
        let more = diagnostics.len() - opts.max_diagnostics;
        out.push_str(&format!(
            "… and {more} more diagnostic{} not shown\n",
            if more == 1 { "" } else { "s" }
        ));
    }
    out
}

/// A diagnostic paired with its source, as miette wants it.
struct Shown<'a> {
    diag: &'a Diagnostic,
    source: &'a SourceView,
}

impl fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.diag, f)
    }
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diag.message)
    }
}

impl std::error::Error for Shown<'_> {}

impl miette::Diagnostic for Shown<'_> {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.diag.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.diag.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.diag
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        if self.diag.labels.is_empty() {
            None
        } else {
            Some(self.source)
        }
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.diag.labels.is_empty() {
            return None;
        }
        let labels = self.diag.labels.iter().enumerate().map(|(i, l)| {
            let span = self.source.clamp(l.span);
            let text = (!l.text.is_empty()).then(|| l.text.clone());
            if i == 0 {
                LabeledSpan::new_primary_with_span(text, span)
            } else {
                LabeledSpan::new_with_span(text, span)
            }
        });
        Some(Box::new(labels))
    }
}

/// The source as the renderer sees it: control characters replaced (byte for byte, so spans
/// stay valid), a line index for O(log n) lookups, and long lines cut to a window around the
/// label so that a 10 MB line does not become 10 MB of terminal output.
struct SourceView {
    name: String,
    text: String,
    line_starts: Vec<usize>,
}

/// Lines longer than this are shown as a window around the label.
const LONG_LINE: usize = 200;
/// Bytes of context kept on each side of a label on a long line.
const WINDOW: usize = 60;
/// Labels longer than this are shortened to their start.
const MAX_LABEL: usize = 120;

impl SourceView {
    fn new(name: &str, text: &str) -> SourceView {
        let text: String = text
            .chars()
            .map(|c| {
                if c.is_ascii_control() && c != '\n' && c != '\t' {
                    '?'
                } else {
                    c
                }
            })
            .collect();
        let mut line_starts = vec![0];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        SourceView {
            name: name.to_string(),
            text,
            line_starts,
        }
    }

    /// Keeps a label inside the text, on char boundaries, and at most `MAX_LABEL` bytes long.
    fn clamp(&self, span: Span) -> SourceSpan {
        let start = self.floor(span.start.min(self.text.len()));
        let mut end = self.floor(span.end.min(self.text.len()).max(start));
        if end - start > MAX_LABEL {
            end = self.floor(start + MAX_LABEL);
        }
        (start, end - start).into()
    }

    fn floor(&self, mut i: usize) -> usize {
        while !self.text.is_char_boundary(i) {
            i -= 1;
        }
        i
    }

    fn ceil(&self, mut i: usize) -> usize {
        while i < self.text.len() && !self.text.is_char_boundary(i) {
            i += 1;
        }
        i.min(self.text.len())
    }

    fn line_of(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&s| s <= offset) - 1
    }

    /// The end of line `line`, including its newline.
    fn line_end(&self, line: usize) -> usize {
        self.line_starts
            .get(line + 1)
            .copied()
            .unwrap_or(self.text.len())
    }
}

impl SourceCode for SourceView {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        before: usize,
        after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'a> + 'a>, miette::MietteError> {
        let start = span.offset().min(self.text.len());
        let end = (start + span.len()).min(self.text.len());
        let first = self.line_of(start);
        let last = self.line_of(end.saturating_sub(1).max(start));
        let column = self.text[self.line_starts[first]..start].chars().count();
        let contents = |from: usize, to: usize, line: usize, column: usize| {
            Box::new(miette::MietteSpanContents::new_named(
                self.name.clone(),
                &self.text.as_bytes()[from..to],
                (from, to - from).into(),
                line,
                column,
                last - first + 1,
            )) as Box<dyn miette::SpanContents<'a> + 'a>
        };
        if before == 0 && after == 0 {
            return Ok(contents(start, end, first, column));
        }
        let line_start = self.line_starts[first];
        let line_len = self.line_end(first) - line_start;
        if line_len > LONG_LINE {
            // Show only a window of the offending line.
            let from = self.floor(start.saturating_sub(WINDOW).max(line_start));
            let line_end = self.line_end(first);
            let to =
                self.ceil((start + WINDOW.max(end - start).min(MAX_LABEL) + WINDOW).min(line_end));
            return Ok(contents(from, to, first, 0));
        }
        let ctx_first = first.saturating_sub(before);
        let mut ctx_last = (last + after).min(self.line_starts.len() - 1);
        // Context lines that are themselves long are dropped rather than windowed.
        while ctx_last > last && self.line_end(ctx_last) - self.line_starts[ctx_last] > LONG_LINE {
            ctx_last -= 1;
        }
        let mut ctx_first = ctx_first;
        while ctx_first < first
            && self.line_end(ctx_first) - self.line_starts[ctx_first] > LONG_LINE
        {
            ctx_first += 1;
        }
        Ok(contents(
            self.line_starts[ctx_first],
            self.line_end(ctx_last),
            ctx_first,
            0,
        ))
    }
}
