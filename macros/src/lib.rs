//! Procedural macros for agentgraph.
