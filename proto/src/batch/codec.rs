//! Compressing and decompressing a batch's records section, one blob per batch, in the formats
//! Kafka's clients write:
//!
//! - gzip: one gzip member (level 6); reading accepts concatenated members.
//! - snappy: snappy-java's block framing ("xerial"), as Kafka's Java producer writes it:
//!   the 8-byte magic `\x82SNAPPY\0`, version 1 and minimum compatible version 1 (big-endian
//!   i32 each), then per block of at most 32 KiB of input a big-endian i32 length and a raw
//!   snappy block. Reading also accepts one raw snappy block, as snappy-java and librdkafka do.
//! - lz4: the LZ4 frame format with 64 KiB independent blocks and no checksums but the
//!   header's (what Kafka writes; Kafka's reader refuses linked blocks).
//! - zstd: one zstd frame (level 3) with its content size; reading accepts several frames.
//!
//! Decompression stops one byte past the caller's limit, so a small blob that expands without
//! bound (a decompression bomb) costs at most `limit` bytes of memory.

use std::io::{Read, Write};

use bytes::{BufMut, BytesMut};
use lz4_flex::frame::{BlockMode, BlockSize, FrameDecoder, FrameEncoder, FrameInfo};

use super::{BatchError, Compression};

/// snappy-java's stream magic.
const XERIAL_MAGIC: [u8; 8] = *b"\x82SNAPPY\0";
/// Magic, version, minimum compatible version.
const XERIAL_HEADER_LEN: usize = 16;
/// snappy-java's default block size: each block compresses at most this much input.
const XERIAL_BLOCK: usize = 32 * 1024;
/// Kafka's default `compression.gzip.level`.
const GZIP_LEVEL: u32 = 6;
/// Kafka's default `compression.zstd.level`.
const ZSTD_LEVEL: i32 = 3;

/// Writing into a growable in-memory buffer has no failure mode of its own; the encoders'
/// `io::Result`s can only carry the writer's errors.
const IN_MEMORY: &str = "compressing into memory cannot fail";

/// Room to reserve for `len` bytes compressed with any codec, so that compressing does not
/// reallocate: above the worst case of each (deflate, lz4 and zstd add well under `len / 64`
/// plus a frame; snappy reserves a whole block's bound of `32 + 32 KiB * 7 / 6` before
/// trimming it).
pub(crate) fn compressed_capacity(len: usize) -> usize {
    len + len / 64 + 8 * 1024
}

/// Appends `records` compressed with `codec` to `out`. With [`Compression::None`] it appends
/// them as they are.
pub(crate) fn compress(codec: Compression, records: &[u8], out: BytesMut) -> BytesMut {
    match codec {
        Compression::None => {
            let mut out = out;
            out.put_slice(records);
            out
        }
        Compression::Gzip => {
            let level = flate2::Compression::new(GZIP_LEVEL);
            let mut encoder = flate2::write::GzEncoder::new(out.writer(), level);
            encoder.write_all(records).expect(IN_MEMORY);
            encoder.finish().expect(IN_MEMORY).into_inner()
        }
        Compression::Snappy => compress_xerial(records, out),
        Compression::Lz4 => {
            let info = FrameInfo::new()
                .block_size(BlockSize::Max64KB)
                .block_mode(BlockMode::Independent);
            let mut encoder = FrameEncoder::with_frame_info(info, out.writer());
            encoder.write_all(records).expect(IN_MEMORY);
            encoder.finish().expect(IN_MEMORY).into_inner()
        }
        Compression::Zstd => {
            let mut encoder =
                zstd::stream::Encoder::new(out.writer(), ZSTD_LEVEL).expect(IN_MEMORY);
            // With the size known up front zstd picks a window no larger than the input (so
            // a reader needs less memory) and writes the content size into the frame.
            encoder
                .set_pledged_src_size(Some(records.len() as u64))
                .expect(IN_MEMORY);
            encoder.include_contentsize(true).expect(IN_MEMORY);
            encoder.write_all(records).expect(IN_MEMORY);
            encoder.finish().expect(IN_MEMORY).into_inner()
        }
    }
}

fn compress_xerial(records: &[u8], mut out: BytesMut) -> BytesMut {
    out.put_slice(&XERIAL_MAGIC);
    out.put_i32(1); // version
    out.put_i32(1); // minimum compatible version
    let mut encoder = snap::raw::Encoder::new();
    for block in records.chunks(XERIAL_BLOCK) {
        let at = out.len();
        out.resize(at + 4 + snap::raw::max_compress_len(block.len()), 0);
        let n = encoder
            .compress(block, &mut out[at + 4..])
            .expect("a buffer of max_compress_len bytes holds any compressed block");
        out.truncate(at + 4 + n);
        // n <= max_compress_len(32 KiB), far below i32::MAX.
        out[at..at + 4].copy_from_slice(&(n as u32).to_be_bytes());
    }
    out
}

/// Decompresses a records section compressed with `codec`, refusing to produce more than
/// `limit` bytes. With [`Compression::None`] it copies `blob`.
///
/// A corrupt blob is [`BatchError::Decompression`]; the codec's own message is dropped, since
/// `BatchError` stays `Copy` and allocation-free, and what a caller can do about either is the
/// same: the batch is unreadable.
pub(crate) fn decompress(
    codec: Compression,
    blob: &[u8],
    limit: usize,
) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::new();
    match codec {
        Compression::None if blob.len() > limit => {
            return Err(BatchError::DecompressedTooLarge { limit });
        }
        Compression::None => out.extend_from_slice(blob),
        Compression::Gzip => {
            let decoder = flate2::bufread::MultiGzDecoder::new(blob);
            read_limited(decoder, codec, limit, &mut out)?;
        }
        Compression::Snappy => decompress_snappy(blob, limit, &mut out)?,
        Compression::Lz4 => {
            // The decoder reports the end of each frame as the end of the stream: read on
            // until the input is used up, so that a second frame is read and trailing bytes
            // are an error (they are not a frame's magic).
            let mut decoder = FrameDecoder::new(blob);
            while !decoder.get_ref().is_empty() {
                read_limited(&mut decoder, codec, limit, &mut out)?;
            }
        }
        Compression::Zstd => match zstd::stream::read::Decoder::with_buffer(blob) {
            Ok(decoder) => read_limited(decoder, codec, limit, &mut out)?,
            // Only a failed allocation of the decoder's context lands here.
            Err(_) => {
                return Err(BatchError::Decompression {
                    codec: codec.name(),
                });
            }
        },
    }
    Ok(out)
}

/// Reads `reader` to its end onto `out`, stopping once `out` is one byte past `limit`.
fn read_limited(
    reader: impl Read,
    codec: Compression,
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), BatchError> {
    let room = limit.saturating_sub(out.len()) as u64;
    match reader.take(room.saturating_add(1)).read_to_end(out) {
        Ok(_) if out.len() > limit => Err(BatchError::DecompressedTooLarge { limit }),
        Ok(_) => Ok(()),
        Err(_) => Err(BatchError::Decompression {
            codec: codec.name(),
        }),
    }
}

fn decompress_snappy(blob: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), BatchError> {
    let corrupt = BatchError::Decompression {
        codec: Compression::Snappy.name(),
    };
    let mut decoder = snap::raw::Decoder::new();
    match blob.split_at_checked(XERIAL_HEADER_LEN) {
        // snappy-java ignores the version fields; so do we.
        Some((header, mut rest)) if header[..XERIAL_MAGIC.len()] == XERIAL_MAGIC => {
            while !rest.is_empty() {
                let (len, tail) = rest.split_first_chunk::<4>().ok_or(corrupt)?;
                // A negative i32 reads as a length above 2 GiB, which no blob holds.
                let len = u32::from_be_bytes(*len) as usize;
                let (block, tail) = tail.split_at_checked(len).ok_or(corrupt)?;
                append_snappy_block(&mut decoder, block, out, limit)?;
                rest = tail;
            }
        }
        _ => append_snappy_block(&mut decoder, blob, out, limit)?,
    }
    Ok(())
}

/// Decompresses one raw snappy block onto the end of `out`. The block's declared length is
/// checked against what `limit` leaves before any memory is reserved for it.
fn append_snappy_block(
    decoder: &mut snap::raw::Decoder,
    block: &[u8],
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<(), BatchError> {
    let corrupt = BatchError::Decompression {
        codec: Compression::Snappy.name(),
    };
    let Ok(len) = snap::raw::decompress_len(block) else {
        return Err(corrupt);
    };
    if len > limit - out.len() {
        return Err(BatchError::DecompressedTooLarge { limit });
    }
    let start = out.len();
    out.resize(start + len, 0);
    match decoder.decompress(block, &mut out[start..]) {
        Ok(n) if n == len => Ok(()),
        _ => Err(corrupt),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 1 << 20;

    fn compressed(codec: Compression, records: &[u8]) -> Vec<u8> {
        compress(codec, records, BytesMut::new()).to_vec()
    }

    fn sample(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i % 251) as u8 ^ (i / 4096) as u8)
            .collect()
    }

    #[test]
    fn every_codec_round_trips_empty_small_and_multi_block_input() {
        for codec in Compression::ALL {
            for len in [0, 1, 100, XERIAL_BLOCK, XERIAL_BLOCK + 1, 200_000] {
                let records = sample(len);
                let blob = compressed(codec, &records);
                assert_eq!(
                    decompress(codec, &blob, LIMIT),
                    Ok(records),
                    "{codec} {len}"
                );
            }
        }
    }

    #[test]
    fn compressed_capacity_covers_incompressible_input() {
        // A xorshift stream: no codec finds anything to compress.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..300_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        for codec in Compression::ALL {
            for len in [0, 10, XERIAL_BLOCK, noise.len()] {
                let blob = compressed(codec, &noise[..len]);
                assert!(
                    blob.len() <= compressed_capacity(len),
                    "{codec}: {len} bytes compress to {}",
                    blob.len()
                );
            }
        }
    }

    #[test]
    fn snappy_writes_xerial_framing_with_32_kib_blocks() {
        let records = sample(XERIAL_BLOCK * 2 + 10);
        let blob = compressed(Compression::Snappy, &records);
        assert_eq!(&blob[..8], b"\x82SNAPPY\0");
        assert_eq!(&blob[8..16], &[0, 0, 0, 1, 0, 0, 0, 1]);
        let mut rest = &blob[16..];
        let mut sizes = Vec::new();
        while !rest.is_empty() {
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            let block = &rest[4..4 + len];
            sizes.push(snap::raw::decompress_len(block).unwrap());
            rest = &rest[4 + len..];
        }
        assert_eq!(sizes, [XERIAL_BLOCK, XERIAL_BLOCK, 10]);
        // An empty records section is the header alone.
        assert_eq!(
            compressed(Compression::Snappy, &[]).len(),
            XERIAL_HEADER_LEN
        );
    }

    #[test]
    fn snappy_reads_a_raw_block() {
        let records = sample(5000);
        let raw = snap::raw::Encoder::new().compress_vec(&records).unwrap();
        assert_eq!(decompress(Compression::Snappy, &raw, LIMIT), Ok(records));
    }

    #[test]
    fn snappy_rejects_bad_xerial_block_lengths() {
        let corrupt = Err(BatchError::Decompression { codec: "snappy" });
        let blob = compressed(Compression::Snappy, &sample(100));
        // A block length past the end, a negative one, and a length cut short.
        for (at, bytes) in [(16, [0, 0, 1, 0]), (16, [0xff, 0xff, 0xff, 0xfe])] {
            let mut bad = blob.clone();
            bad[at..at + 4].copy_from_slice(&bytes);
            assert_eq!(decompress(Compression::Snappy, &bad, LIMIT), corrupt);
        }
        let mut bad = blob.clone();
        bad.extend_from_slice(&[0, 0]);
        assert_eq!(decompress(Compression::Snappy, &bad, LIMIT), corrupt);
    }

    #[test]
    fn output_is_limited_to_the_limit_inclusive() {
        let records = vec![7u8; 10_000];
        for codec in Compression::ALL {
            let blob = compressed(codec, &records);
            assert_eq!(
                decompress(codec, &blob, records.len()),
                Ok(records.clone()),
                "{codec}"
            );
            assert_eq!(
                decompress(codec, &blob, records.len() - 1),
                Err(BatchError::DecompressedTooLarge {
                    limit: records.len() - 1
                }),
                "{codec}"
            );
        }
    }

    #[test]
    fn garbage_is_a_decompression_error() {
        for codec in [Compression::Gzip, Compression::Lz4, Compression::Zstd] {
            assert_eq!(
                decompress(codec, b"definitely not compressed", LIMIT),
                Err(BatchError::Decompression {
                    codec: codec.name()
                })
            );
        }
        // 0xff 0xff ... is a varint length that never ends.
        assert_eq!(
            decompress(Compression::Snappy, &[0xff; 12], LIMIT),
            Err(BatchError::Decompression { codec: "snappy" })
        );
    }

    #[test]
    fn concatenated_streams_are_read_whole() {
        for codec in [Compression::Gzip, Compression::Lz4, Compression::Zstd] {
            let (first, second) = (sample(70_000), b"second".to_vec());
            let mut blob = compressed(codec, &first);
            blob.extend_from_slice(&compressed(codec, &second));
            let whole = [first, second].concat();
            assert_eq!(
                decompress(codec, &blob, LIMIT),
                Ok(whole.clone()),
                "{codec}"
            );
            // The limit counts across streams.
            assert_eq!(
                decompress(codec, &blob, whole.len() - 1),
                Err(BatchError::DecompressedTooLarge {
                    limit: whole.len() - 1
                }),
                "{codec}"
            );
        }
    }

    #[test]
    fn trailing_bytes_after_the_stream_are_a_decompression_error() {
        for codec in [Compression::Gzip, Compression::Lz4, Compression::Zstd] {
            let mut blob = compressed(codec, &sample(1000));
            blob.extend_from_slice(b"junk after the end");
            assert_eq!(
                decompress(codec, &blob, LIMIT),
                Err(BatchError::Decompression {
                    codec: codec.name()
                }),
                "{codec}"
            );
        }
    }
}
