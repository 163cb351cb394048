//! Multi-agent patterns, built as graphs over the engine's primitives and the agent's pieces,
//! so that each inherits checkpoints, resume, events and the monitor.

pub mod group_chat;
