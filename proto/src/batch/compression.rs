//! The compression codec of a batch: its attribute bits and its Kafka name.

use std::fmt;
use std::str::FromStr;

use super::BatchError;

/// Compression codec, attribute bits 0-2. A compressed batch compresses its whole records
/// section (everything after the 61-byte header) as one blob; see [`super`] for each codec's
/// exact format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// Records stored as they are.
    #[default]
    None,
    /// gzip (RFC 1952), level 6 like Kafka's default.
    Gzip,
    /// Snappy, in snappy-java's ("xerial") block framing as Kafka's Java producer writes it.
    Snappy,
    /// LZ4 frame format, 64 KiB independent blocks.
    Lz4,
    /// Zstandard, level 3 like Kafka's default.
    Zstd,
}

impl Compression {
    /// Every codec, in attribute-bit order.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The codec named by attribute bits 0-2.
    pub fn from_attributes(attributes: i16) -> Result<Self, BatchError> {
        match (attributes & 0x07) as u8 {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            codec => Err(BatchError::UnknownCompression { codec }),
        }
    }

    /// The codec's attribute bits.
    pub fn id(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// Lower-case name, as in Kafka's `compression.type`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    /// The Kafka name, e.g. `lz4`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Compression {
    type Err = ParseCompressionError;

    /// Parses a Kafka `compression.type` name. ASCII case is ignored, so `LZ4` from an
    /// environment variable reads as `lz4`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Compression::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| ParseCompressionError {
                value: s.to_owned(),
            })
    }
}

/// A compression name that is none of Kafka's. Configuration parsing only, so it owns the
/// offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown compression type {value:?}: valid names are none, gzip, snappy, lz4 and zstd")]
pub struct ParseCompressionError {
    /// The name that was given.
    pub value: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODECS: [(i16, Compression, &str); 5] = [
        (0, Compression::None, "none"),
        (1, Compression::Gzip, "gzip"),
        (2, Compression::Snappy, "snappy"),
        (3, Compression::Lz4, "lz4"),
        (4, Compression::Zstd, "zstd"),
    ];

    #[test]
    fn from_attributes_reads_each_codec_from_bits_0_to_2() {
        for (bits, codec, _) in CODECS {
            assert_eq!(Compression::from_attributes(bits), Ok(codec));
            // Timestamp type, transactional and control bits do not change the codec.
            assert_eq!(Compression::from_attributes(bits | 0x0038), Ok(codec));
            assert_eq!(Compression::from_attributes(bits | i16::MIN), Ok(codec));
        }
    }

    #[test]
    fn from_attributes_rejects_codecs_5_to_7() {
        for codec in 5u8..=7 {
            let bits = i16::from(codec);
            let want = Err(BatchError::UnknownCompression { codec });
            assert_eq!(Compression::from_attributes(bits), want);
            assert_eq!(Compression::from_attributes(bits | 0x7ff8), want);
        }
    }

    #[test]
    fn id_and_name_match_kafka() {
        for (bits, codec, name) in CODECS {
            assert_eq!((codec.id(), codec.name()), (bits, name));
        }
        assert_eq!(Compression::default(), Compression::None);
        assert_eq!(Compression::ALL.map(|c| c.id()), [0, 1, 2, 3, 4]);
    }

    #[test]
    fn display_and_from_str_use_kafka_names() {
        for (_, codec, name) in CODECS {
            assert_eq!(codec.to_string(), name);
            assert_eq!(name.parse::<Compression>(), Ok(codec));
            assert_eq!(name.to_ascii_uppercase().parse::<Compression>(), Ok(codec));
        }
    }

    #[test]
    fn from_str_names_the_value_and_the_valid_names() {
        for value in ["", "lz5", "zstd ", "uncompressed", "producer"] {
            let err = value.parse::<Compression>().unwrap_err();
            assert_eq!(err.value, value);
            assert_eq!(
                err.to_string(),
                format!(
                    "unknown compression type {value:?}: valid names are none, gzip, snappy, \
                     lz4 and zstd"
                )
            );
        }
    }
}
