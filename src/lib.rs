//! persona-gateway: an OpenAI-compatible chat-completions gateway for persona models.
//!
//! The modules here are the platform-free core, tested on the host with `cargo test`; `glue`
//! (built for wasm32 only) wires them to the Workers runtime.

pub mod auth;
pub mod cors;
pub mod error;
pub mod json;
pub mod models;
pub mod persona;
pub mod request;
pub mod request_id;
pub mod retry;
pub mod route;
pub mod sse;
pub mod upstream;
pub mod usage;

#[cfg(target_arch = "wasm32")]
mod glue;
