//! The control client used by `gatewatch run` (not written yet).

use crate::control::protocol::{ControlRequest, ControlResponse};

/// Why the control gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Not written yet.
    #[error("not implemented yet")]
    NotImplemented,
}

/// Talks to one or more controls, with failover.
#[derive(Debug, Clone)]
pub struct ControlClient {}

impl ControlClient {
    /// Asks the control about one URL.
    pub async fn query(&self, _req: &ControlRequest) -> Result<ControlResponse, ControlError> {
        Err(ControlError::NotImplemented)
    }
}
