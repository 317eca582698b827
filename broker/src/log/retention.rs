//! Which sealed segments retention deletes: a pure decision over segment metadata, so it is
//! tested without files.
//!
//! Kafka's rules: segments go oldest first, only whole sealed segments (never the active
//! one); by size, a segment goes while the log without it would still hold at least
//! `retention_bytes`; by time, a segment goes when its newest record is older than
//! `retention_ms`. A segment goes when either rule says so, and deletion stops at the first
//! segment that neither rule removes.

use super::LogConfig;

/// What retention needs to know of a sealed segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentMeta {
    /// First offset.
    pub base_offset: i64,
    /// Bytes.
    pub size: u64,
    /// Largest record timestamp, if the segment has records.
    pub max_timestamp: Option<i64>,
}

/// The number of leading `sealed` segments to delete, given the log's `total_bytes`
/// (active segment included) and the time `now_ms`.
pub fn segments_to_delete(
    sealed: &[SegmentMeta],
    total_bytes: u64,
    config: &LogConfig,
    now_ms: i64,
) -> usize {
    let mut remaining = total_bytes;
    let mut n = 0;
    for seg in sealed {
        let by_size = config
            .retention_bytes
            .is_some_and(|limit| remaining.saturating_sub(seg.size) >= limit);
        let by_time = match (config.retention_ms, seg.max_timestamp) {
            (Some(ms), Some(ts)) => now_ms.saturating_sub(ts) > ms as i64,
            _ => false,
        };
        if !(by_size || by_time) {
            break;
        }
        remaining -= seg.size;
        n += 1;
    }
    n
}

/// What one retention pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionOutcome {
    /// Segments deleted.
    pub deleted_segments: usize,
    /// Bytes deleted.
    pub deleted_bytes: u64,
    /// Log start offset afterwards.
    pub log_start: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(base: i64, size: u64, ts: i64) -> SegmentMeta {
        SegmentMeta {
            base_offset: base,
            size,
            max_timestamp: Some(ts),
        }
    }

    fn config(bytes: Option<u64>, ms: Option<u64>) -> LogConfig {
        LogConfig {
            retention_bytes: bytes,
            retention_ms: ms,
            ..LogConfig::default()
        }
    }

    #[test]
    fn size_retention_keeps_at_least_the_limit() {
        let sealed = [seg(0, 100, 0), seg(10, 100, 0), seg(20, 100, 0)];
        // total 350 (50 in the active segment); limit 200: deleting the first leaves 250,
        // deleting the second would leave 150 < 200.
        assert_eq!(
            segments_to_delete(&sealed, 350, &config(Some(200), None), 0),
            1
        );
        assert_eq!(
            segments_to_delete(&sealed, 350, &config(Some(50), None), 0),
            3
        );
        assert_eq!(
            segments_to_delete(&sealed, 350, &config(Some(351), None), 0),
            0
        );
        assert_eq!(segments_to_delete(&sealed, 350, &config(None, None), 0), 0);
    }

    #[test]
    fn time_retention_deletes_expired_prefix_only() {
        let sealed = [seg(0, 1, 1_000), seg(10, 1, 5_000), seg(20, 1, 2_000)];
        let c = config(None, Some(1_000));
        assert_eq!(segments_to_delete(&sealed, 10, &c, 2_000), 0); // 1000 old: not over
        assert_eq!(segments_to_delete(&sealed, 10, &c, 2_001), 1);
        // the third is expired but the second is not: stop at the second
        assert_eq!(segments_to_delete(&sealed, 10, &c, 4_000), 1);
        assert_eq!(segments_to_delete(&sealed, 10, &c, 6_001), 3);
    }

    #[test]
    fn either_rule_deletes() {
        let sealed = [seg(0, 100, 10_000), seg(10, 100, 0)];
        let c = config(Some(150), Some(1_000));
        // first goes by size (250 - 100 >= 150), second by time
        assert_eq!(segments_to_delete(&sealed, 250, &c, 5_000), 2);
    }

    #[test]
    fn segment_without_timestamp_never_expires_by_time() {
        let sealed = [SegmentMeta {
            base_offset: 0,
            size: 1,
            max_timestamp: None,
        }];
        assert_eq!(
            segments_to_delete(&sealed, 2, &config(None, Some(1)), i64::MAX),
            0
        );
    }
}
