//! Multi-process tests for Brook.
