//! Server-side partition assignors: pure functions from members, their subscriptions and the
//! topics' partition counts (and, for the sticky one, the current assignment) to a target
//! assignment. Deterministic: the same input always gives the same output.

use std::collections::{BTreeMap, BTreeSet};

use super::TopicPartition;

/// What an assignor knows of one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSubscription {
    /// Topics the member wants.
    pub topics: BTreeSet<String>,
    /// Partitions the current target gives it (used by the sticky assignor).
    pub current: BTreeSet<TopicPartition>,
}

/// Member id → the partitions it should own.
pub type Assignment = BTreeMap<String, BTreeSet<TopicPartition>>;

/// Which assignor a group uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Assignor {
    /// Kafka's range assignor: per topic, contiguous ranges in member-id order.
    Range,
    /// Balanced across all topics, moving as few partitions as possible (Kafka's "uniform").
    #[default]
    Uniform,
}

impl Assignor {
    /// Computes the target assignment. Every member appears in the result, possibly empty.
    pub fn assign(
        self,
        members: &BTreeMap<String, MemberSubscription>,
        partitions: &BTreeMap<String, u32>,
    ) -> Assignment {
        match self {
            Assignor::Range => range(members, partitions),
            Assignor::Uniform => uniform(members, partitions),
        }
    }
}

fn range(
    members: &BTreeMap<String, MemberSubscription>,
    partitions: &BTreeMap<String, u32>,
) -> Assignment {
    let mut out: Assignment = members
        .keys()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    for (topic, &count) in partitions {
        let subscribers: Vec<&String> = members
            .iter()
            .filter(|(_, s)| s.topics.contains(topic))
            .map(|(m, _)| m)
            .collect();
        if subscribers.is_empty() {
            continue;
        }
        let n = subscribers.len() as u32;
        let (each, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, m) in subscribers.iter().enumerate() {
            let take = each + u32::from((i as u32) < extra);
            let set = out.get_mut(*m).expect("every member has an entry");
            for p in next..next + take {
                set.insert(TopicPartition::new(topic.clone(), p));
            }
            next += take;
        }
    }
    out
}

fn uniform(
    members: &BTreeMap<String, MemberSubscription>,
    partitions: &BTreeMap<String, u32>,
) -> Assignment {
    // Every partition some member subscribes to.
    let all: BTreeSet<TopicPartition> = partitions
        .iter()
        .filter(|(t, _)| members.values().any(|s| s.topics.contains(*t)))
        .flat_map(|(t, &n)| (0..n).map(move |p| TopicPartition::new(t.clone(), p)))
        .collect();
    let mut out: Assignment = BTreeMap::new();
    let mut taken: BTreeSet<TopicPartition> = BTreeSet::new();
    // Keep what each member has and may still have.
    for (m, s) in members {
        let keep: BTreeSet<TopicPartition> = s
            .current
            .iter()
            .filter(|tp| all.contains(*tp) && s.topics.contains(&tp.topic) && !taken.contains(*tp))
            .cloned()
            .collect();
        taken.extend(keep.iter().cloned());
        out.insert(m.clone(), keep);
    }
    if members.is_empty() {
        return out;
    }
    let n = members.len();
    let quota_floor = all.len() / n;
    let with_extra = all.len() % n;
    // Members over their quota give back their highest partitions: the first `with_extra`
    // members (by load, then id) may keep floor + 1.
    let mut order: Vec<String> = out.keys().cloned().collect();
    order.sort_by(|a, b| out[b].len().cmp(&out[a].len()).then(a.cmp(b)));
    let mut quota: BTreeMap<String, usize> = BTreeMap::new();
    for (i, m) in order.iter().enumerate() {
        quota.insert(m.clone(), quota_floor + usize::from(i < with_extra));
    }
    for (m, set) in out.iter_mut() {
        while set.len() > quota[m] {
            let last = set.iter().next_back().cloned().expect("non-empty");
            set.remove(&last);
            taken.remove(&last);
        }
    }
    // Hand out the rest, each to the least-loaded subscribed member (ties by id).
    for tp in all.iter().filter(|tp| !taken.contains(*tp)) {
        let pick = members
            .iter()
            .filter(|(_, s)| s.topics.contains(&tp.topic))
            .map(|(m, _)| m)
            .min_by(|a, b| {
                let (la, lb) = (out[*a].len(), out[*b].len());
                let (fa, fb) = (la >= quota[*a], lb >= quota[*b]);
                fa.cmp(&fb).then(la.cmp(&lb)).then(a.cmp(b))
            })
            .expect("someone subscribes to every partition in `all`");
        out.get_mut(pick).expect("member").insert(tp.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(spec: &[(&str, &[&str])]) -> BTreeMap<String, MemberSubscription> {
        spec.iter()
            .map(|(m, topics)| {
                (
                    m.to_string(),
                    MemberSubscription {
                        topics: topics.iter().map(|t| t.to_string()).collect(),
                        current: BTreeSet::new(),
                    },
                )
            })
            .collect()
    }

    fn tps(a: &Assignment, m: &str) -> Vec<String> {
        a[m].iter()
            .map(|tp| format!("{}-{}", tp.topic, tp.partition))
            .collect()
    }

    #[test]
    fn range_gives_contiguous_ranges_per_topic_extra_to_the_first() {
        let m = members(&[("a", &["t", "u"]), ("b", &["t", "u"]), ("c", &["t"])]);
        let a = Assignor::Range.assign(&m, &BTreeMap::from([("t".into(), 7), ("u".into(), 3)]));
        assert_eq!(tps(&a, "a"), ["t-0", "t-1", "t-2", "u-0", "u-1"]);
        assert_eq!(tps(&a, "b"), ["t-3", "t-4", "u-2"]);
        assert_eq!(tps(&a, "c"), ["t-5", "t-6"]);
    }

    #[test]
    fn uniform_balances_and_covers_every_partition_exactly_once() {
        let m = members(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]);
        let a = Assignor::Uniform.assign(&m, &BTreeMap::from([("t".into(), 6)]));
        let sizes: Vec<usize> = a.values().map(|s| s.len()).collect();
        assert_eq!(sizes, [2, 2, 2]);
        let all: BTreeSet<_> = a.values().flatten().cloned().collect();
        assert_eq!(all.len(), 6);
    }

    #[test]
    fn uniform_is_sticky_when_a_member_joins() {
        let mut m = members(&[("a", &["t"]), ("b", &["t"])]);
        let parts = BTreeMap::from([("t".into(), 6)]);
        let first = Assignor::Uniform.assign(&m, &parts);
        for (id, s) in m.iter_mut() {
            s.current = first[id].clone();
        }
        m.insert(
            "c".into(),
            MemberSubscription {
                topics: ["t".to_string()].into(),
                current: BTreeSet::new(),
            },
        );
        let second = Assignor::Uniform.assign(&m, &parts);
        assert_eq!(
            second.values().map(|s| s.len()).collect::<Vec<_>>(),
            [2, 2, 2]
        );
        // a and b each give up exactly one partition, keeping the other two.
        assert_eq!(first["a"].intersection(&second["a"]).count(), 2);
        assert_eq!(first["b"].intersection(&second["b"]).count(), 2);
    }

    #[test]
    fn uniform_respects_subscriptions() {
        let m = members(&[("a", &["t"]), ("b", &["u"])]);
        let a = Assignor::Uniform.assign(
            &m,
            &BTreeMap::from([("t".into(), 3), ("u".into(), 1), ("z".into(), 4)]),
        );
        assert_eq!(tps(&a, "a"), ["t-0", "t-1", "t-2"]);
        assert_eq!(tps(&a, "b"), ["u-0"]);
    }
}
