//! The garbage collector's decisions, free of I/O: given what the owner graph knows about
//! one object (its owners, already classified; its dependents; its own deletion state),
//! say what to do next. The semantics are kube-controller-manager's garbage collector:
//!
//! - an object being deleted with the `orphan` finalizer first has its ownerReferences
//!   removed from every dependent, then loses the finalizer;
//! - an object being deleted with the `foregroundDeletion` finalizer keeps it while any
//!   dependent that references it with `blockOwnerDeletion: true` exists;
//! - a dependent with no solid owner left (every owner absent, or being deleted in
//!   foreground) is deleted: in foreground when a foreground-deleting owner waits for it
//!   and it has dependents of its own, else with the propagation its own finalizers ask for;
//! - a dependent that keeps a solid owner drops its references to absent owners and to
//!   owners waiting for it.

/// The finalizer of an object whose dependents are deleted before it.
pub const FOREGROUND: &str = "foregroundDeletion";
/// The finalizer of an object whose dependents are released before it goes.
pub const ORPHAN: &str = "orphan";

/// How a delete asks the API server to treat the dependents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

impl Propagation {
    pub fn as_str(self) -> &'static str {
        match self {
            Propagation::Background => "Background",
            Propagation::Foreground => "Foreground",
            Propagation::Orphan => "Orphan",
        }
    }
}

/// What the collector found out about one owner of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerState {
    /// Exists and is not waiting for its dependents.
    Solid,
    /// Does not exist (verified), has another uid, or the reference is invalid (a namespaced
    /// owner must live in the dependent's namespace).
    Absent,
    /// Being deleted in foreground: waits for its dependents to go.
    WaitingForDependents,
}

/// One dependent of an object, as the graph knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependent {
    pub uid: String,
    /// Whether its reference to the object sets `blockOwnerDeletion`.
    pub blocks: bool,
    /// Whether it is itself being deleted in foreground.
    pub deleting_dependents: bool,
}

/// Everything the plan needs about one object.
#[derive(Debug, Clone, Default)]
pub struct Item {
    /// `deletionTimestamp` is set.
    pub deleting: bool,
    /// Carries the `foregroundDeletion` finalizer.
    pub foreground: bool,
    /// Carries the `orphan` finalizer.
    pub orphan: bool,
    /// Its owners (by uid) and what became of them.
    pub owners: Vec<(String, OwnerState)>,
    pub dependents: Vec<Dependent>,
}

/// What to do with the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing now (no owners, solid owners only, or deleting without GC finalizers).
    Nothing,
    /// Remove the object's uid from these dependents' ownerReferences, then its `orphan`
    /// finalizer.
    Orphan { dependents: Vec<String> },
    /// Foreground deletion still waits on these blocking dependents; look at them again
    /// (they are to be deleted).
    WaitForDependents { requeue: Vec<String> },
    /// Remove this finalizer from the object (its deletion can complete).
    RemoveFinalizer(&'static str),
    /// Drop the references to these owners (absent or waiting), keeping the solid ones.
    RemoveOwnerRefs(Vec<String>),
    /// Delete the object with this propagation. `unblock` lists owners whose references
    /// must first lose `blockOwnerDeletion` (a foreground cycle would wait forever).
    Delete {
        propagation: Propagation,
        unblock: Vec<String>,
    },
}

/// Decide what to do with `item`.
pub fn decide(item: &Item) -> Decision {
    if item.deleting {
        if item.orphan {
            return Decision::Orphan {
                dependents: item.dependents.iter().map(|d| d.uid.clone()).collect(),
            };
        }
        if item.foreground {
            let blocking: Vec<&Dependent> = item.dependents.iter().filter(|d| d.blocks).collect();
            if blocking.is_empty() {
                return Decision::RemoveFinalizer(FOREGROUND);
            }
            return Decision::WaitForDependents {
                requeue: blocking
                    .iter()
                    .filter(|d| !d.deleting_dependents)
                    .map(|d| d.uid.clone())
                    .collect(),
            };
        }
        // Being deleted by someone else (grace period, other finalizers): not ours.
        return Decision::Nothing;
    }
    if item.owners.is_empty() {
        return Decision::Nothing;
    }
    let of = |state: OwnerState| -> Vec<String> {
        item.owners
            .iter()
            .filter(|(_, s)| *s == state)
            .map(|(u, _)| u.clone())
            .collect()
    };
    let solid = of(OwnerState::Solid);
    let absent = of(OwnerState::Absent);
    let waiting = of(OwnerState::WaitingForDependents);
    if !solid.is_empty() {
        if absent.is_empty() && waiting.is_empty() {
            return Decision::Nothing;
        }
        let mut drop = absent;
        drop.extend(waiting);
        return Decision::RemoveOwnerRefs(drop);
    }
    if !waiting.is_empty() && !item.dependents.is_empty() {
        // A dependent of ours already deleting in foreground may itself wait for us: stop
        // blocking our owners so that the chain cannot deadlock.
        let cycle = item.dependents.iter().any(|d| d.deleting_dependents);
        return Decision::Delete {
            propagation: Propagation::Foreground,
            unblock: if cycle { waiting } else { Vec::new() },
        };
    }
    let propagation = if item.orphan {
        Propagation::Orphan
    } else if item.foreground {
        Propagation::Foreground
    } else {
        Propagation::Background
    };
    Decision::Delete {
        propagation,
        unblock: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(uid: &str, blocks: bool) -> Dependent {
        Dependent {
            uid: uid.into(),
            blocks,
            deleting_dependents: false,
        }
    }

    fn owned(owners: &[(&str, OwnerState)]) -> Item {
        Item {
            owners: owners.iter().map(|(u, s)| (u.to_string(), *s)).collect(),
            ..Item::default()
        }
    }

    #[test]
    fn object_without_owners_is_left_alone() {
        assert_eq!(decide(&Item::default()), Decision::Nothing);
    }

    #[test]
    fn dependent_of_absent_owner_is_deleted_in_background() {
        let item = owned(&[("rs", OwnerState::Absent)]);
        assert_eq!(
            decide(&item),
            Decision::Delete {
                propagation: Propagation::Background,
                unblock: vec![]
            }
        );
    }

    #[test]
    fn dependent_keeps_living_while_one_owner_remains_and_drops_the_absent_one() {
        let item = owned(&[("a", OwnerState::Absent), ("b", OwnerState::Solid)]);
        assert_eq!(decide(&item), Decision::RemoveOwnerRefs(vec!["a".into()]));
        let item = owned(&[("b", OwnerState::Solid)]);
        assert_eq!(decide(&item), Decision::Nothing);
        let item = owned(&[
            ("w", OwnerState::WaitingForDependents),
            ("b", OwnerState::Solid),
        ]);
        assert_eq!(decide(&item), Decision::RemoveOwnerRefs(vec!["w".into()]));
    }

    #[test]
    fn own_finalizers_choose_the_propagation() {
        let mut item = owned(&[("x", OwnerState::Absent)]);
        item.orphan = true;
        assert!(matches!(
            decide(&item),
            Decision::Delete {
                propagation: Propagation::Orphan,
                ..
            }
        ));
        item.orphan = false;
        item.foreground = true;
        assert!(matches!(
            decide(&item),
            Decision::Delete {
                propagation: Propagation::Foreground,
                ..
            }
        ));
    }

    #[test]
    fn dependent_of_foreground_owner_with_dependents_goes_in_foreground_too() {
        let mut item = owned(&[("deploy", OwnerState::WaitingForDependents)]);
        item.dependents = vec![dep("pod", true)];
        assert_eq!(
            decide(&item),
            Decision::Delete {
                propagation: Propagation::Foreground,
                unblock: vec![]
            }
        );
        // Without dependents of its own a plain delete does.
        item.dependents.clear();
        assert_eq!(
            decide(&item),
            Decision::Delete {
                propagation: Propagation::Background,
                unblock: vec![]
            }
        );
    }

    #[test]
    fn foreground_cycle_unblocks_the_waiting_owners() {
        let mut item = owned(&[("a", OwnerState::WaitingForDependents)]);
        item.dependents = vec![Dependent {
            uid: "b".into(),
            blocks: true,
            deleting_dependents: true,
        }];
        assert_eq!(
            decide(&item),
            Decision::Delete {
                propagation: Propagation::Foreground,
                unblock: vec!["a".into()]
            }
        );
    }

    #[test]
    fn foreground_owner_waits_only_for_blocking_dependents() {
        let mut item = Item {
            deleting: true,
            foreground: true,
            ..Item::default()
        };
        item.dependents = vec![dep("p1", true), dep("p2", false)];
        assert_eq!(
            decide(&item),
            Decision::WaitForDependents {
                requeue: vec!["p1".into()]
            }
        );
        item.dependents = vec![dep("p2", false)];
        assert_eq!(decide(&item), Decision::RemoveFinalizer(FOREGROUND));
        item.dependents.clear();
        assert_eq!(decide(&item), Decision::RemoveFinalizer(FOREGROUND));
    }

    #[test]
    fn orphaning_releases_every_dependent() {
        let item = Item {
            deleting: true,
            orphan: true,
            dependents: vec![dep("rs1", true), dep("cm", false)],
            ..Item::default()
        };
        assert_eq!(
            decide(&item),
            Decision::Orphan {
                dependents: vec!["rs1".into(), "cm".into()]
            }
        );
    }

    #[test]
    fn object_deleted_by_others_is_not_touched() {
        let mut item = owned(&[("x", OwnerState::Absent)]);
        item.deleting = true;
        assert_eq!(decide(&item), Decision::Nothing);
    }
}
