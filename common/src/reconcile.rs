//! The run reconciler (`docs/contract.md` §6.5): closes the gap Temporal cannot — runs whose workflow was
//! terminated, timed out, failed, or never started — by comparing non-terminal runs with their
//! workflow's described status. Used by the worker (periodically) and the api's maintenance
//! endpoints. Safe in several processes at once: a pass holds a transaction-scoped advisory lock
//! (others skip), and finalization itself only ever moves a non-terminal run.

use std::time::Duration;

use serde::Serialize;
use sqlx::PgPool;
use temporalio_client::errors::WorkflowInteractionError;
use temporalio_client::{Client, UntypedWorkflow, WorkflowDescribeOptions, WorkflowExecutionStatus};
use uuid::Uuid;

use crate::db::runs::Finalization;
use crate::events::{self, EventPublisher};
use crate::{MediaType, RunStatus, messages, workflow};

/// Advisory-lock key of a reconciler pass ("DRKRECON").
const PASS_LOCK: i64 = 0x4452_4b52_4543_4f4e;

/// A QUEUED run whose workflow was never started (Temporal was away when it was created).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunToStart {
    pub run_id: Uuid,
    pub media_id: Uuid,
    pub user_id: Uuid,
    pub media_type: MediaType,
    pub run_number: i32,
    pub filename: String,
    pub workflow_id: String,
}

#[derive(Clone)]
pub struct Reconciler {
    db: PgPool,
    temporal: Client,
    events: EventPublisher,
    /// The task queue on which QUEUED runs that have no workflow are started; without one they
    /// are finalized as not started.
    pub start_on: Option<String>,
    /// Runs updated more recently than this are left alone (they are moving).
    pub stale_after: Duration,
    /// A run without a workflow is only finalized once it is this old (its start may be in flight).
    pub missing_grace: Duration,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PassReport {
    pub checked: usize,
    pub finalized: usize,
    /// QUEUED runs whose workflow was started by this pass.
    #[serde(default)]
    pub started: usize,
}

/// What the workflow of a run says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkflowState {
    Running,
    Missing,
    Closed(WorkflowExecutionStatus),
}

/// The reconciler's verdict for a non-terminal run (§6.5 table); `None` leaves it alone.
pub fn action_for(state: WorkflowState, run_age: Duration, missing_grace: Duration) -> Option<Finalization> {
    let finish = |m: &str| Some(Finalization::Finish { error: Some(m.to_string()) });
    match state {
        WorkflowState::Running => None,
        WorkflowState::Missing if run_age >= missing_grace => finish(messages::WORKFLOW_NOT_STARTED),
        WorkflowState::Missing => None,
        WorkflowState::Closed(s) => match s {
            WorkflowExecutionStatus::Failed => finish(messages::WORKFLOW_FAILED),
            WorkflowExecutionStatus::TimedOut => finish(messages::WORKFLOW_TIMED_OUT),
            WorkflowExecutionStatus::Terminated => finish(messages::WORKFLOW_TERMINATED),
            WorkflowExecutionStatus::Canceled => Some(Finalization::Cancel),
            WorkflowExecutionStatus::Completed => finish(messages::WORKFLOW_ENDED),
            _ => None,
        },
    }
}

struct Candidate {
    id: Uuid,
    workflow_id: String,
    age: Duration,
    queued: bool,
}

/// What one reconciliation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconciled {
    Nothing,
    Finalized,
    Started,
}

impl Reconciler {
    pub fn new(db: PgPool, temporal: Client, events: EventPublisher) -> Self {
        Self {
            db,
            temporal,
            events,
            start_on: None,
            stale_after: Duration::from_secs(60),
            missing_grace: Duration::from_secs(120),
        }
    }

    pub async fn describe(&self, workflow_id: &str) -> anyhow::Result<WorkflowState> {
        let handle = self.temporal.get_workflow_handle::<UntypedWorkflow>(workflow_id);
        match handle.describe(WorkflowDescribeOptions::default()).await {
            Ok(d) => Ok(match d.status() {
                WorkflowExecutionStatus::Running | WorkflowExecutionStatus::ContinuedAsNew => WorkflowState::Running,
                other => WorkflowState::Closed(other),
            }),
            Err(WorkflowInteractionError::NotFound(_)) => Ok(WorkflowState::Missing),
            Err(e) => Err(anyhow::anyhow!("cannot describe workflow {workflow_id}: {e}")),
        }
    }

    /// One pass over the stale non-terminal runs. Another process's pass in progress → nothing.
    pub async fn run_pass(&self) -> anyhow::Result<PassReport> {
        let mut lock = self.db.begin().await?;
        let got: bool = sqlx::query_scalar!(r#"SELECT pg_try_advisory_xact_lock($1) AS "got!""#, PASS_LOCK)
            .fetch_one(&mut *lock)
            .await?;
        if !got {
            return Ok(PassReport::default());
        }
        let stale = self.stale_after.as_secs_f64();
        let candidates: Vec<Candidate> = sqlx::query!(
            r#"SELECT id, workflow_id, EXTRACT(EPOCH FROM now() - created_at)::float8 AS "age!",
                      status = 'QUEUED' AS "queued!"
               FROM analysis_runs
               WHERE status IN ('QUEUED', 'PROCESSING', 'PARTIALLY_ANALYZED')
                 AND updated_at <= now() - make_interval(secs => $1)
               ORDER BY updated_at
               LIMIT 500"#,
            stale
        )
        .fetch_all(&self.db)
        .await?
        .into_iter()
        .map(|r| Candidate {
            id: r.id,
            workflow_id: r.workflow_id,
            age: Duration::from_secs_f64(r.age.max(0.0)),
            queued: r.queued,
        })
        .collect();

        let mut report = PassReport { checked: candidates.len(), finalized: 0, started: 0 };
        for c in candidates {
            match self.reconcile(c.id, &c.workflow_id, c.age, c.queued).await {
                Ok(Reconciled::Finalized) => report.finalized += 1,
                Ok(Reconciled::Started) => report.started += 1,
                Ok(Reconciled::Nothing) => {}
                Err(e) => {
                    tracing::warn!(run.id = %c.id, workflow_id = %c.workflow_id, error = %format!("{e:#}"), "run not reconciled")
                }
            }
        }
        lock.commit().await?;
        if report.finalized > 0 || report.started > 0 {
            tracing::info!(
                checked = report.checked,
                finalized = report.finalized,
                started = report.started,
                "reconciler pass"
            );
        }
        Ok(report)
    }

    /// Applies the table to one run; true when this call finalized it.
    pub async fn reconcile_one(&self, run_id: Uuid, workflow_id: &str, age: Duration) -> anyhow::Result<bool> {
        Ok(self.reconcile(run_id, workflow_id, age, false).await? == Reconciled::Finalized)
    }

    /// Applies the table to one run; a QUEUED run without a workflow is started when `start_on` is
    /// set (durable intake: uploads accepted while Temporal was away).
    pub async fn reconcile(
        &self,
        run_id: Uuid,
        workflow_id: &str,
        age: Duration,
        queued: bool,
    ) -> anyhow::Result<Reconciled> {
        let state = self.describe(workflow_id).await?;
        if let (WorkflowState::Missing, true, Some(task_queue)) = (state, queued, self.start_on.as_deref()) {
            let Some(run) = self.run_to_start(run_id).await? else { return Ok(Reconciled::Nothing) };
            workflow::start_run(&self.temporal, task_queue, &run).await?;
            tracing::info!(run.id = %run_id, workflow_id, "queued run started by the reconciler");
            return Ok(Reconciled::Started);
        }
        if self.finalize_by_table(run_id, workflow_id, state, age).await? {
            Ok(Reconciled::Finalized)
        } else {
            Ok(Reconciled::Nothing)
        }
    }

    async fn run_to_start(&self, run_id: Uuid) -> anyhow::Result<Option<RunToStart>> {
        let row = sqlx::query!(
            r#"SELECT r.id, r.media_id, m.user_id, m.media_type AS "media_type: MediaType", r.run_number, m.filename,
                      r.workflow_id
               FROM analysis_runs r JOIN media m ON m.id = r.media_id
               WHERE r.id = $1 AND r.status = 'QUEUED'"#,
            run_id
        )
        .fetch_optional(&self.db)
        .await?;
        Ok(row.map(|r| RunToStart {
            run_id: r.id,
            media_id: r.media_id,
            user_id: r.user_id,
            media_type: r.media_type,
            run_number: r.run_number,
            filename: r.filename,
            workflow_id: r.workflow_id,
        }))
    }

    async fn finalize_by_table(
        &self,
        run_id: Uuid,
        workflow_id: &str,
        state: WorkflowState,
        age: Duration,
    ) -> anyhow::Result<bool> {
        let Some(how) = action_for(state, age, self.missing_grace) else { return Ok(false) };
        let Some(finalized) = events::finalize_run(&self.db, &self.events, run_id, how).await? else {
            return Ok(false);
        };
        tracing::info!(
            run.id = %run_id, workflow_id, media.id = %finalized.media_id, status = %finalized.status,
            reason = ?finalized.error_message, "run finalized by the reconciler"
        );
        Ok(true)
    }
}

/// One finding of `verify-statuses`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatusIssue {
    pub media_id: Uuid,
    pub filename: String,
    pub run_id: Option<Uuid>,
    pub issue: String,
    pub current_run_status: Option<RunStatus>,
    pub expected_run_status: Option<RunStatus>,
    pub current_media_status: RunStatus,
    pub expected_media_status: RunStatus,
    pub analyses: Option<AnalysisCounts>,
    #[serde(skip)]
    pub kind: IssueKind,
    #[serde(skip)]
    pub workflow_id: Option<String>,
    #[serde(skip)]
    pub run_age: Duration,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct AnalysisCounts {
    pub total: i64,
    pub completed: i64,
    pub failed: i64,
    pub pending: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IssueKind {
    /// Media status differs from its latest run's.
    #[default]
    MediaMismatch,
    /// A terminal run whose status or counts contradict its rows.
    RunContradiction,
    /// A non-terminal run whose workflow is closed or missing.
    OrphanRun,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    pub total_media: i64,
    pub correct_media: i64,
    pub incorrect_media: i64,
    pub issues: Vec<StatusIssue>,
}

impl Reconciler {
    pub async fn verify(&self) -> anyhow::Result<Verification> {
        let rows = sqlx::query!(
            r#"SELECT m.id AS media_id, m.filename, m.status AS "media_status: RunStatus",
                      r.id AS "run_id?", r.status AS "run_status?: RunStatus", r.workflow_id AS "workflow_id?",
                      r.completed_count AS "completed_count?", r.failed_count AS "failed_count?",
                      EXTRACT(EPOCH FROM now() - r.created_at)::float8 AS "run_age?",
                      (SELECT count(*) FROM deepfake_analyses a WHERE a.analysis_run_id = r.id) AS "total!",
                      (SELECT count(*) FROM deepfake_analyses a WHERE a.analysis_run_id = r.id AND a.status = 'COMPLETED') AS "completed!",
                      (SELECT count(*) FROM deepfake_analyses a WHERE a.analysis_run_id = r.id AND a.status = 'FAILED') AS "failed!",
                      (SELECT count(*) FROM deepfake_analyses a WHERE a.analysis_run_id = r.id AND a.status IN ('PENDING', 'RUNNING')) AS "pending!"
               FROM media m
               LEFT JOIN LATERAL (
                   SELECT * FROM analysis_runs r WHERE r.media_id = m.id ORDER BY r.run_number DESC LIMIT 1
               ) r ON true
               ORDER BY m.created_at"#
        )
        .fetch_all(&self.db)
        .await?;

        let mut issues = Vec::new();
        let mut incorrect = 0i64;
        for row in &rows {
            let counts =
                AnalysisCounts { total: row.total, completed: row.completed, failed: row.failed, pending: row.pending };
            let before = issues.len();
            let Some(run_status) = row.run_status else { continue };
            let base = |issue: String, kind: IssueKind, expected_run: Option<RunStatus>, expected_media: RunStatus| {
                StatusIssue {
                    media_id: row.media_id,
                    filename: row.filename.clone(),
                    run_id: row.run_id,
                    issue,
                    current_run_status: Some(run_status),
                    expected_run_status: expected_run,
                    current_media_status: row.media_status,
                    expected_media_status: expected_media,
                    analyses: Some(counts),
                    kind,
                    workflow_id: row.workflow_id.clone(),
                    run_age: Duration::from_secs_f64(row.run_age.unwrap_or(0.0).max(0.0)),
                }
            };
            if run_status.is_terminal() {
                let expected = match run_status {
                    RunStatus::Cancelled => RunStatus::Cancelled,
                    _ => RunStatus::final_for(counts.completed),
                };
                let counts_wrong = row.completed_count.map(i64::from) != Some(counts.completed)
                    || row.failed_count.map(i64::from) != Some(counts.failed);
                if expected != run_status || counts_wrong {
                    issues.push(base(
                        format!(
                            "Run is {run_status} with {} completed and {} failed analyses (stored counts {}/{})",
                            counts.completed,
                            counts.failed,
                            row.completed_count.unwrap_or(0),
                            row.failed_count.unwrap_or(0)
                        ),
                        IssueKind::RunContradiction,
                        Some(expected),
                        expected,
                    ));
                }
            } else if let Some(workflow_id) = &row.workflow_id {
                match self.describe(workflow_id).await {
                    Ok(WorkflowState::Running) | Err(_) => {}
                    Ok(state) => issues.push(base(
                        format!("Run is {run_status} but its workflow is {}", describe_state(state)),
                        IssueKind::OrphanRun,
                        None,
                        run_status,
                    )),
                }
            }
            if row.media_status != run_status && issues.len() == before {
                issues.push(base(
                    format!("Media is {} but its latest run is {run_status}", row.media_status),
                    IssueKind::MediaMismatch,
                    Some(run_status),
                    run_status,
                ));
            }
            if issues.len() > before {
                incorrect += 1;
            }
        }
        let total = rows.len() as i64;
        Ok(Verification { total_media: total, correct_media: total - incorrect, incorrect_media: incorrect, issues })
    }

    /// Repairs what `verify` found: recomputation for the first two kinds, the reconciler for
    /// orphan runs. Never moves a terminal run to a non-terminal status. Returns (fixed, failed).
    pub async fn fix(&self) -> anyhow::Result<(usize, usize)> {
        let verification = self.verify().await?;
        let (mut fixed, mut failed) = (0, 0);
        for issue in verification.issues {
            let outcome = match (issue.kind, issue.run_id) {
                (IssueKind::OrphanRun, Some(run_id)) => {
                    // A QUEUED run without a workflow is started (when this reconciler starts
                    // runs), never failed: it is an upload accepted while Temporal was away.
                    let wf = issue.workflow_id.clone().unwrap_or_default();
                    let queued = issue.current_run_status == Some(RunStatus::Queued);
                    let mut forced = self.clone();
                    forced.missing_grace = Duration::ZERO;
                    forced.reconcile(run_id, &wf, issue.run_age, queued).await.map(|r| r != Reconciled::Nothing)
                }
                (IssueKind::RunContradiction, Some(run_id)) => {
                    crate::db::repair::recompute_terminal(&self.db, run_id).await.map_err(Into::into)
                }
                (IssueKind::MediaMismatch, _) => {
                    crate::db::repair::sync_media_status(&self.db, issue.media_id).await.map_err(Into::into)
                }
                _ => Ok(false),
            };
            match outcome {
                Ok(true) => fixed += 1,
                Ok(false) => failed += 1,
                Err(e) => {
                    tracing::warn!(media.id = %issue.media_id, error = %format!("{e:#}"), "status issue not fixed");
                    failed += 1;
                }
            }
        }
        Ok((fixed, failed))
    }
}

fn describe_state(s: WorkflowState) -> String {
    match s {
        WorkflowState::Running => "running".to_string(),
        WorkflowState::Missing => "missing".to_string(),
        WorkflowState::Closed(st) => format!("closed ({st:?})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(f: Option<Finalization>) -> Option<String> {
        match f {
            Some(Finalization::Finish { error }) => error,
            Some(Finalization::Cancel) => Some("cancel".to_string()),
            None => None,
        }
    }

    #[test]
    fn the_table_of_section_6_5() {
        let grace = Duration::from_secs(120);
        let old = Duration::from_secs(300);
        assert_eq!(err(action_for(WorkflowState::Running, old, grace)), None);
        assert_eq!(err(action_for(WorkflowState::Missing, Duration::from_secs(30), grace)), None);
        assert_eq!(
            err(action_for(WorkflowState::Missing, old, grace)).as_deref(),
            Some(messages::WORKFLOW_NOT_STARTED)
        );
        let closed = |s| err(action_for(WorkflowState::Closed(s), old, grace));
        assert_eq!(closed(WorkflowExecutionStatus::Failed).as_deref(), Some(messages::WORKFLOW_FAILED));
        assert_eq!(closed(WorkflowExecutionStatus::TimedOut).as_deref(), Some(messages::WORKFLOW_TIMED_OUT));
        assert_eq!(closed(WorkflowExecutionStatus::Terminated).as_deref(), Some(messages::WORKFLOW_TERMINATED));
        assert_eq!(closed(WorkflowExecutionStatus::Canceled).as_deref(), Some("cancel"));
        assert_eq!(closed(WorkflowExecutionStatus::Completed).as_deref(), Some(messages::WORKFLOW_ENDED));
    }
}
