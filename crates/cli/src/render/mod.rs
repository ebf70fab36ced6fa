//! Output formats. Each renderer is a pure function from core types to text, so the
//! commands stay thin and the formats can be tested without running the binary.

pub mod dot;
pub mod html;
pub mod order;
pub mod svg;
pub mod text;
pub mod verdict;
pub mod view;
