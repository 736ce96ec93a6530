//! Uploads, media and run endpoints, and file serving, over real HTTP against Postgres, Redis,
//! files under a temporary directory and, where runs must start, a Temporal dev server.

mod crud;
mod files;
mod openapi;
mod pipeline;
mod results;
mod s3;
mod uploads;
