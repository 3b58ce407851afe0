//! Helpers for the suites.
