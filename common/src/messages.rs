//! Every message this system stores on a run (`errorMessage`) or an analysis row (`errorMessage`,
//! `resultPayload.error`), and the details text of a waiting run: one place, so that the
//! contract's wording (`docs/contract.md` §3.3, §3.4) is written once.
//!
//! Messages the ML server sends back are stored as it worded them (bounded), except where its
//! failure has no usable message: then the `ML_*` texts below apply.

// Runs and rows that end without an answer.

/// A step before the fan-out failed for good (preparing the run, discovering its models).
pub const NOT_STARTED: &str = "Analysis could not be started";
/// The run was cancelled; also every row it left unfinished.
pub const CANCELLED: &str = "Analysis cancelled";
/// A row left unfinished by a finalization that gives no reason of its own.
pub const UNFINISHED: &str = "Analysis did not complete";
/// The stored file of the media is gone.
pub const MISSING_FILE: &str = "Media file is missing from storage";

/// No model of the ML server handles the media's type.
pub fn no_compatible_models(media_type: impl std::fmt::Display) -> String {
    format!("No compatible models available for {media_type}")
}

// The reconciler's verdicts on runs whose workflow did not finalize them.

pub const WORKFLOW_NOT_STARTED: &str = "Analysis workflow could not be started";
pub const WORKFLOW_FAILED: &str = "Analysis workflow failed";
pub const WORKFLOW_TIMED_OUT: &str = "Analysis workflow timed out";
pub const WORKFLOW_TERMINATED: &str = "Analysis workflow was terminated";
pub const WORKFLOW_ENDED: &str = "Analysis workflow ended unexpectedly";

// Failures of the ML server that carry no message of their own (`docs/ml-server.md` §7).

pub const ML_UNAVAILABLE: &str = "Model analysis service is unavailable.";
pub const ML_TIMEOUT: &str = "Request to model analysis service timed out.";
pub const ML_AUTH: &str = "Model analysis service rejected the backend's credentials.";
pub const ML_INVALID: &str = "Analysis failed with an invalid response from the model server.";
pub const ML_GENERIC: &str = "Analysis failed on the model server.";

/// Current-details text of a run (Temporal Web UI, `temporal workflow metadata`) and the
/// `waiting` field of the `progress` query while the ML server is down or not ready.
pub const WAITING_FOR_ML: &str = "Waiting for the ML server";
