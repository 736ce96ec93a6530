//! Shared building blocks of the api and the worker: configuration, domain types, database access,
//! storage, the progress-event channel and the Temporal names both sides must agree on.

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
