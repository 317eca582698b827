//! The key partitioner: Kafka's murmur2, so a key lands on the same partition number in Brook
//! and in Kafka (`org.apache.kafka.common.utils.Utils.murmur2`, `BuiltInPartitioner`).

/// Kafka's murmur2 hash seed.
const SEED: u32 = 0x9747_b28c;
/// murmur2 mixing constant.
const M: u32 = 0x5bd1_e995;
/// murmur2 shift.
const R: u32 = 24;

/// 32-bit murmur2 of `data`, bit for bit the value Kafka's `Utils.murmur2` returns (Java's
/// `int`, hence the `i32`). Four-byte blocks are read little-endian; the tail bytes are mixed
/// as unsigned.
pub fn murmur2(data: &[u8]) -> i32 {
    // Kafka mixes in the length as a Java int; keys longer than 2 GiB do not exist.
    let mut h = SEED ^ (data.len() as u32);
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        if tail.len() == 3 {
            h ^= u32::from(tail[2]) << 16;
        }
        if tail.len() >= 2 {
            h ^= u32::from(tail[1]) << 8;
        }
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition for a keyed record: `(murmur2(key) & 0x7fffffff) % partitions`, as Kafka's
/// default partitioner computes it.
///
/// # Panics
///
/// If `partitions` is 0.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    assert!(partitions > 0, "a topic has at least one partition");
    (murmur2(key) as u32 & 0x7fff_ffff) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's own `UtilsTest.testMurmur2` vectors, plus short inputs covering every tail
    /// length. Cross-checked with a literal Java port of `Utils.murmur2` run on Java 17.
    #[test]
    fn murmur2_matches_kafka() {
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
            (b"", 275_646_681),
            (b"1", -1_993_445_489),
            (b"12", 126_087_238),
            (b"123", -267_702_483),
            (b"1234", -1_614_185_708),
            (b"12345", -1_188_365_604),
            (b"kafka", -798_503_068),
        ];
        for (input, expected) in cases {
            assert_eq!(
                murmur2(input),
                *expected,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    /// Bytes above 0x7f must be mixed as unsigned (Java masks with `& 0xff`).
    #[test]
    fn murmur2_treats_high_bytes_as_unsigned() {
        assert_eq!(murmur2(&[0xff]), -311_467_685);
        assert_eq!(murmur2(&[0x80, 0xff]), -80_095_470);
        assert_eq!(murmur2(&[0xfe, 0xdc, 0xba]), -1_356_783_892);
        assert_eq!(murmur2(&[0xff, 0xfe, 0xfd, 0xfc, 0x80]), -247_105_293);
    }

    #[test]
    fn partition_for_key_matches_kafka() {
        // Reference values from the same Java port: (murmur2(key) & 0x7fffffff) % n.
        assert_eq!(partition_for_key(b"21", 3), 0);
        assert_eq!(partition_for_key(b"foobar", 12), 6);
        assert_eq!(partition_for_key(b"a-little-bit-long-string", 3), 2);
        assert_eq!(partition_for_key(b"a-little-bit-longer-string", 12), 11);
        assert_eq!(partition_for_key(b"12", 3), 1);
        assert_eq!(partition_for_key(b"kafka", 12), 4);
        assert_eq!(partition_for_key(b"user-42", 3), 1);
        assert_eq!(partition_for_key(b"order-1001", 12), 6);
        assert_eq!(partition_for_key(&[0x80, 0xff], 7), 2);
        assert_eq!(partition_for_key(b"anything", 1), 0);
    }
}
