//! The `.nn` language: grammar, syntax tree and parse diagnostics.
//!
//! Invariants:
//! - every AST node carries the byte span of its text;
//! - parsing never panics and never recurses deeper than [`scan::MAX_NESTING`] brackets;
//! - a parse error is a [`Diagnostic`] that says what was expected in words, never a rule name.

pub mod ast;
pub mod diagnostic;
mod parser;
pub mod scan;
mod span;

pub use diagnostic::{Diagnostic, Label, RenderOptions, Severity, render};
pub use parser::parse;
pub use span::Span;
