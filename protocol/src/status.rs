use serde::{Deserialize, Serialize};

/// Where a deployment is in its lifecycle. Status and stage are the same value on the
/// wire; stages run in declaration order, and the last three end a deployment.
///
/// Everything a stage means lives here: its progress, its message, which stages may
/// follow it, and which plans run it ([`Plan::stages`]). Adding a stage touches this file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Created and waiting for a worker.
    Pending,
    /// A worker is making a shallow clone of the branch.
    Cloning,
    /// The Docker engine is building the image.
    Building,
    /// The container is starting and being health-checked.
    Deploying,
    /// The new container is healthy and serving.
    Success,
    /// Something went wrong; `error_message` says what.
    Failed,
    /// Someone cancelled it.
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Pending,
        Status::Cloning,
        Status::Building,
        Status::Deploying,
        Status::Success,
        Status::Failed,
        Status::Cancelled,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Cloning => "cloning",
            Status::Building => "building",
            Status::Deploying => "deploying",
            Status::Success => "success",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    /// The progress a deployment shows when it enters this status.
    pub const fn progress(self) -> u8 {
        match self {
            Status::Pending | Status::Failed | Status::Cancelled => 0,
            Status::Cloning => 20,
            Status::Building => 50,
            Status::Deploying => 80,
            Status::Success => 100,
        }
    }

    /// The highest progress allowed inside this stage: the next stage's value.
    pub const fn progress_ceiling(self) -> u8 {
        match self {
            Status::Pending => Status::Cloning.progress(),
            Status::Cloning => Status::Building.progress(),
            Status::Building => Status::Deploying.progress(),
            Status::Deploying => Status::Success.progress(),
            other => other.progress(),
        }
    }

    pub const fn default_message(self) -> &'static str {
        match self {
            Status::Pending => "Waiting in queue",
            Status::Cloning => "Cloning repository",
            Status::Building => "Building Docker image",
            Status::Deploying => "Starting container",
            Status::Success => "Deployment successful",
            Status::Failed => "Deployment failed",
            Status::Cancelled => "Deployment cancelled",
        }
    }

    pub const fn is_terminal(self) -> bool {
        matches!(self, Status::Success | Status::Failed | Status::Cancelled)
    }

    /// The one rule for moving between statuses: forward to the next stage of a plan, or
    /// to `failed` / `cancelled` from any unfinished status. Nothing leaves a terminal
    /// status. A redeploy skips from `pending` straight to `deploying`.
    pub const fn can_transition_to(self, next: Status) -> bool {
        match (self, next) {
            (from, _) if from.is_terminal() => false,
            (_, Status::Failed | Status::Cancelled) => true,
            (Status::Pending, Status::Cloning | Status::Deploying)
            | (Status::Cloning, Status::Building)
            | (Status::Building, Status::Deploying)
            | (Status::Deploying, Status::Success) => true,
            _ => false,
        }
    }
}

/// What a deployment does between `pending` and its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Plan {
    /// Clone the repository, build its image, start it.
    Build,
    /// Start an image an earlier deployment built (a redeploy or a rollback).
    Image,
}

impl Plan {
    /// The unfinished stages this plan runs, in order; a deployment then ends `success`,
    /// `failed` or `cancelled`.
    pub const fn stages(self) -> &'static [Status] {
        match self {
            Plan::Build => &[
                Status::Pending,
                Status::Cloning,
                Status::Building,
                Status::Deploying,
            ],
            Plan::Image => &[Status::Pending, Status::Deploying],
        }
    }

    /// The stage after `current` in this plan: `success` after the last one.
    pub fn next(self, current: Status) -> Option<Status> {
        let stages = self.stages();
        let at = stages.iter().position(|s| *s == current)?;
        Some(stages.get(at + 1).copied().unwrap_or(Status::Success))
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Status::{self, *};

    #[test]
    fn stages_move_forward_one_at_a_time() {
        assert!(Pending.can_transition_to(Cloning));
        assert!(Cloning.can_transition_to(Building));
        assert!(Building.can_transition_to(Deploying));
        assert!(Deploying.can_transition_to(Success));
        assert!(!Pending.can_transition_to(Building));
        assert!(!Cloning.can_transition_to(Deploying));
        assert!(!Pending.can_transition_to(Success));
        assert!(!Building.can_transition_to(Cloning));
        assert!(!Pending.can_transition_to(Pending));
    }

    #[test]
    fn plans_walk_only_allowed_transitions() {
        use super::Plan;
        for plan in [Plan::Build, Plan::Image] {
            let mut at = Pending;
            let mut path = vec![at];
            while let Some(next) = plan.next(at) {
                assert!(at.can_transition_to(next), "{plan:?}: {at} -> {next}");
                path.push(next);
                if next.is_terminal() {
                    break;
                }
                at = next;
            }
            assert_eq!(path.last(), Some(&Success), "{plan:?}");
            assert_eq!(&path[..path.len() - 1], plan.stages(), "{plan:?}");
        }
        assert_eq!(Plan::Image.next(Pending), Some(Deploying));
        assert_eq!(Plan::Image.next(Building), None);
        assert!(Pending.can_transition_to(Deploying));
    }

    #[test]
    fn any_unfinished_status_can_fail_or_be_cancelled() {
        for from in [Pending, Cloning, Building, Deploying] {
            assert!(from.can_transition_to(Failed), "{from} -> failed");
            assert!(from.can_transition_to(Cancelled), "{from} -> cancelled");
        }
    }

    #[test]
    fn terminal_statuses_are_final() {
        for from in [Success, Failed, Cancelled] {
            assert!(from.is_terminal());
            for to in Status::ALL {
                assert!(!from.can_transition_to(to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn progress_and_messages_follow_the_lifecycle_table() {
        let table: [(Status, u8, &str); 7] = [
            (Pending, 0, "Waiting in queue"),
            (Cloning, 20, "Cloning repository"),
            (Building, 50, "Building Docker image"),
            (Deploying, 80, "Starting container"),
            (Success, 100, "Deployment successful"),
            (Failed, 0, "Deployment failed"),
            (Cancelled, 0, "Deployment cancelled"),
        ];
        for (status, progress, message) in table {
            assert_eq!(status.progress(), progress);
            assert_eq!(status.default_message(), message);
        }
        assert_eq!(Building.progress_ceiling(), 80);
    }
}
