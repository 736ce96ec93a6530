//! Shared building blocks of the api and the worker: configuration, domain types, database access,
//! storage, the progress-event channel, the stored messages, and the workflow's client contract.
//!
//! Sections cited as `§x.y` are those of `docs/contract.md` unless a comment names
//! `docs/ml-server.md`.

pub mod config;
pub mod db;
pub mod events;
pub mod messages;
pub mod metrics;
pub mod model;
pub mod patience;
pub mod payload;
pub mod reconcile;
pub mod redis_conn;
pub mod storage;
pub mod telemetry;
pub mod temporal;
pub mod time;
pub mod workflow;

pub use model::{AnalysisStatus, MediaType, RunStatus, UserRole};
