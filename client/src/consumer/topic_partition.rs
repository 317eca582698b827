//! [`TopicPartition`]: one partition of one topic, the unit a consumer is assigned, seeks and
//! reports positions for.

use std::fmt;
use std::sync::Arc;

/// One partition of one topic.
///
/// The topic name is an `Arc<str>` so that every record fetched from the partition shares it
/// instead of allocating a copy.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// The topic's name.
    pub topic: Arc<str>,
    /// The partition number, from 0.
    pub partition: u32,
}

impl TopicPartition {
    /// Partition `partition` of `topic`.
    pub fn new(topic: impl Into<Arc<str>>, partition: u32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

/// `topic-partition`, as Kafka prints it (`orders-3`).
impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_like_kafka_and_orders_by_topic_then_partition() {
        assert_eq!(TopicPartition::new("orders", 3).to_string(), "orders-3");
        let mut tps = vec![
            TopicPartition::new("b", 0),
            TopicPartition::new("a", 2),
            TopicPartition::new("a", 10),
        ];
        tps.sort();
        assert_eq!(
            tps,
            [
                TopicPartition::new("a", 2),
                TopicPartition::new("a", 10),
                TopicPartition::new("b", 0)
            ]
        );
    }
}
