//! The hand-out of this node's GPUs (DESIGN §8): each GPU goes to one instance at a time; an
//! instance that asks for more than are free waits, and its status says why.

use std::collections::BTreeMap;

/// Why an instance cannot have the GPUs it asks for. Its text is the waiting instance's
/// health (`aether instance list`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum Shortage {
    /// This node hands out no GPUs at all.
    #[error(
        "needs {}; this node offers none (deploy.gpus, or NVML lists none)",
        count(*.needs)
    )]
    NoneOffered {
        /// GPUs asked for.
        needs: u32,
    },
    /// This node has fewer GPUs than asked for, even with every one free.
    #[error("needs {}; this node has {has}", count(*.needs))]
    TooFew {
        /// GPUs asked for.
        needs: u32,
        /// GPUs this node hands out.
        has: usize,
    },
    /// Too few of this node's GPUs are free now.
    #[error(
        "needs {}; {free} of {has} free ({})",
        count(*.needs),
        held_by(.holders)
    )]
    Held {
        /// GPUs asked for.
        needs: u32,
        /// GPUs free now.
        free: usize,
        /// GPUs this node hands out.
        has: usize,
        /// Who holds which GPU (`a/w/0`, or `a/w/0 (stopping)`), lowest GPU first.
        holders: Vec<(u32, String)>,
    },
}

/// `1 GPU`, `2 GPUs`.
fn count(n: u32) -> String {
    let plural = if n == 1 { "" } else { "s" };
    format!("{n} GPU{plural}")
}

/// `a/w/0 holds GPU 0, b/w/1 holds GPU 1`.
fn held_by(h: &[(u32, String)]) -> String {
    h.iter()
        .map(|(g, who)| format!("{who} holds GPU {g}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `n` of the GPUs in `inventory` that nobody in `held` (GPU → instance) holds, lowest first;
/// or why not, naming who holds what.
pub(super) fn pick(
    inventory: &[u32],
    held: &BTreeMap<u32, String>,
    n: u32,
) -> Result<Vec<u32>, Shortage> {
    let free: Vec<u32> = inventory
        .iter()
        .copied()
        .filter(|g| !held.contains_key(g))
        .collect();
    if free.len() >= n as usize {
        return Ok(free[..n as usize].to_vec());
    }
    let holders: Vec<(u32, String)> = held
        .iter()
        .filter(|(g, _)| inventory.contains(g))
        .map(|(g, who)| (*g, who.clone()))
        .collect();
    Err(if inventory.is_empty() {
        Shortage::NoneOffered { needs: n }
    } else if holders.is_empty() {
        Shortage::TooFew {
            needs: n,
            has: inventory.len(),
        }
    } else {
        Shortage::Held {
            needs: n,
            free: free.len(),
            has: inventory.len(),
            holders,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpus_are_picked_lowest_free_first_or_refused_naming_who_holds_them() {
        let held = BTreeMap::from([(0, "a/w/0".to_string())]);
        assert_eq!(pick(&[0, 1, 2], &BTreeMap::new(), 2), Ok(vec![0, 1]));
        assert_eq!(pick(&[0, 1, 2], &held, 2), Ok(vec![1, 2]));
        assert_eq!(pick(&[0, 1], &held, 0), Ok(vec![]));
        let why = |r: Result<Vec<u32>, Shortage>| r.unwrap_err().to_string();
        assert_eq!(
            pick(&[0, 1], &held, 2),
            Err(Shortage::Held {
                needs: 2,
                free: 1,
                has: 2,
                holders: vec![(0, "a/w/0".into())],
            })
        );
        assert_eq!(
            why(pick(&[0, 1], &held, 2)),
            "needs 2 GPUs; 1 of 2 free (a/w/0 holds GPU 0)"
        );
        assert_eq!(
            pick(&[0, 1], &BTreeMap::new(), 3),
            Err(Shortage::TooFew { needs: 3, has: 2 })
        );
        assert_eq!(
            why(pick(&[0, 1], &BTreeMap::new(), 3)),
            "needs 3 GPUs; this node has 2"
        );
        assert_eq!(
            pick(&[], &BTreeMap::new(), 1),
            Err(Shortage::NoneOffered { needs: 1 })
        );
        assert_eq!(
            why(pick(&[], &BTreeMap::new(), 1)),
            "needs 1 GPU; this node offers none (deploy.gpus, or NVML lists none)"
        );
        // Held elsewhere than this node's inventory does not count as a holder here.
        let other = BTreeMap::from([(7, "b/w/0".to_string())]);
        assert_eq!(why(pick(&[0], &other, 2)), "needs 2 GPUs; this node has 1");
    }
}
