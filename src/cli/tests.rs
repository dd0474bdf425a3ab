//! Snapshot tests of the CLI renderers.
