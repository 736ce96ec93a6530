//! The analysis report of one run as a PDF (§4.5): a small page-layout layer over `pdf-writer`
//! with embedded, subset DejaVu Sans faces, the report's sections and frame-score charts, and the
//! values a report derives from a run. Pure computation: the api reads the run and serves the
//! bytes.

mod chart;
mod doc;
mod report;
mod summary;

pub use report::{ReportInput, TITLE, render_report};
pub use summary::{Risk, Summary, Verdict, report_filename, report_id, risk, verdict};
