//! The api's integration tests, in one binary: accounts and HTTP conventions, media, realtime,
//! monitoring, reports, start-up, and the real `api`/`worker` binaries under outages and scale.
//! Every test runs against real services (Postgres, Redis, Temporal dev servers, S3, the ML
//! stand-in) started by `support` and `drishtiksha_testkit`.

mod support;

mod auth;
mod durability;
mod media;
mod monitoring;
mod openapi;
mod pdf;
mod realtime;
mod realtime_burst;
mod realtime_pipeline;
mod scale;
mod startup;
