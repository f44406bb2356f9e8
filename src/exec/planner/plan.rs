//! What the planner answers: a [`Plan`], serialized as JSON for Python's `Explanation`.

use serde::Serialize;

use crate::exec::devset::SplitShare;
use crate::exec::placement::Placement;

/// One placement the planner considered, with its prediction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub backend: Placement,
    pub workers: usize,
    /// Predicted wall time of the call, from the profile (None: no samples yet).
    pub predicted_ms: Option<f64>,
    pub samples: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub indicator: String,
    pub rows: usize,
    pub size_bucket: String,
    pub backend: Placement,
    pub workers: usize,
    pub reason: String,
    pub explored: bool,
    /// The GPU ordinal when the plan runs on a GPU (`backend` is then `gpu:<index>`).
    pub gpu: Option<usize>,
    /// The members and their shares when the plan splits the rows across devices.
    pub split: Vec<SplitShare>,
    pub candidates: Vec<Candidate>,
    /// The profile entries the prediction used (`indicator/bucket/backend: samples, ewma`).
    pub profile_entries: Vec<String>,
}
