//! The nnc graph IR.
//!
//! A checked model becomes one IR [`Function`] per training step: the forward ops from
//! [`lower`], backward ops derived from them by [`autodiff`], optimizer updates from [`optim`],
//! then [`passes`]. [`interp`] runs any function; [`print`](mod@print) and [`parse`] are each other's
//! inverse; [`verify`] checks the invariants after every pass.

pub mod autodiff;
pub mod compile;
pub mod data_parallel;
pub mod function;
pub mod gradcheck;
pub mod init;
pub mod interp;
pub mod lower;
pub mod op;
pub mod ops;
pub mod optim;
pub mod parse;
pub mod passes;
pub mod print;
pub mod types;
pub mod verify;

pub use function::{Builder, Function, Inst, ValueId};
pub use op::{Binary, Compare, Op, Unary};
pub use types::{DType, Type};
