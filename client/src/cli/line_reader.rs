//! stdin lines to records: line endings removed, key split off at a separator.

use bytes::Bytes;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// One input line as a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRecord {
    /// The part before the separator; `None` without a separator or when the line holds none.
    pub key: Option<Bytes>,
    /// The line (or the part after the separator), without its line ending.
    pub value: Bytes,
}

/// Reads records from lines. [`LineReader::next_record`] is cancel-safe: a partly read line
/// stays buffered and the next call completes it, so the caller may race it against a linger
/// timer.
#[derive(Debug)]
pub struct LineReader<R> {
    input: R,
    separator: Option<Vec<u8>>,
    /// The line being read, kept across cancelled calls.
    buf: Vec<u8>,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    /// Reads `input`, splitting keys at `separator` when one is given.
    pub fn new(input: R, separator: Option<&str>) -> LineReader<R> {
        LineReader {
            input,
            separator: separator.map(|s| s.as_bytes().to_vec()),
            buf: Vec::new(),
        }
    }

    /// The next record, or `None` at the end of the input. A last line without a line ending
    /// is a record; the empty rest after a final `\n` is not.
    pub async fn next_record(&mut self) -> std::io::Result<Option<LineRecord>> {
        // `read_until` appends what it read to `buf` even when cancelled midway.
        let n = self.input.read_until(b'\n', &mut self.buf).await?;
        if n == 0 && self.buf.is_empty() {
            return Ok(None);
        }
        let line = std::mem::take(&mut self.buf);
        Ok(Some(split_key(
            trim_line_ending(&line),
            self.separator.as_deref(),
        )))
    }
}

/// `line` without a trailing `\n` or `\r\n`.
pub fn trim_line_ending(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Splits `line` at the first occurrence of `separator` into key and value. Without a
/// separator, or when the line does not contain it, the key is `None` and the value the whole
/// line. An empty separator never matches.
pub fn split_key(line: &[u8], separator: Option<&[u8]>) -> LineRecord {
    let position = separator
        .filter(|sep| !sep.is_empty())
        .and_then(|sep| find(line, sep).map(|at| (at, sep.len())));
    match position {
        Some((at, len)) => LineRecord {
            key: Some(Bytes::copy_from_slice(&line[..at])),
            value: Bytes::copy_from_slice(&line[at + len..]),
        },
        None => LineRecord {
            key: None,
            value: Bytes::copy_from_slice(line),
        },
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: Option<&str>, value: &str) -> LineRecord {
        LineRecord {
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: Bytes::copy_from_slice(value.as_bytes()),
        }
    }

    #[test]
    fn split_key_splits_at_the_first_separator() {
        assert_eq!(split_key(b"k:v", Some(b":")), rec(Some("k"), "v"));
        assert_eq!(split_key(b"k:v:w", Some(b":")), rec(Some("k"), "v:w"));
        assert_eq!(
            split_key(b"user-1::a::b", Some(b"::")),
            rec(Some("user-1"), "a::b")
        );
        assert_eq!(split_key(b":v", Some(b":")), rec(Some(""), "v"));
        assert_eq!(split_key(b"k:", Some(b":")), rec(Some("k"), ""));
    }

    #[test]
    fn line_without_separator_has_a_null_key() {
        assert_eq!(
            split_key(b"no separator", Some(b"\t")),
            rec(None, "no separator")
        );
        assert_eq!(split_key(b"k:v", None), rec(None, "k:v"));
        assert_eq!(split_key(b"k:v", Some(b"")), rec(None, "k:v"));
        assert_eq!(split_key(b"", Some(b":")), rec(None, ""));
    }

    #[test]
    fn trim_line_ending_removes_lf_and_crlf_once() {
        assert_eq!(trim_line_ending(b"a\n"), b"a");
        assert_eq!(trim_line_ending(b"a\r\n"), b"a");
        assert_eq!(trim_line_ending(b"a"), b"a");
        assert_eq!(trim_line_ending(b"a\n\n"), b"a\n");
        assert_eq!(trim_line_ending(b"\r"), b"");
    }

    #[tokio::test]
    async fn reader_yields_every_line_including_empty_and_unterminated_ones() {
        let input: &[u8] = b"a=1\r\n\nb\nc=3";
        let mut reader = LineReader::new(input, Some("="));
        let mut got = Vec::new();
        while let Some(r) = reader.next_record().await.unwrap() {
            got.push(r);
        }
        assert_eq!(
            got,
            vec![
                rec(Some("a"), "1"),
                rec(None, ""),
                rec(None, "b"),
                rec(Some("c"), "3")
            ]
        );
    }

    #[tokio::test]
    async fn reader_keeps_non_utf8_bytes() {
        let input: &[u8] = b"\xff\xfe\n";
        let mut reader = LineReader::new(input, None);
        let r = reader.next_record().await.unwrap().unwrap();
        assert_eq!(&r.value[..], b"\xff\xfe");
        assert!(reader.next_record().await.unwrap().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn reader_survives_cancellation_midway_through_a_line() {
        use tokio::io::AsyncWriteExt;
        let (mut write, read) = tokio::io::duplex(64);
        let mut reader = LineReader::new(tokio::io::BufReader::new(read), None);
        write.write_all(b"hel").await.unwrap();
        let timed_out =
            tokio::time::timeout(std::time::Duration::from_millis(10), reader.next_record()).await;
        assert!(timed_out.is_err());
        write.write_all(b"lo\nx\n").await.unwrap();
        assert_eq!(
            reader.next_record().await.unwrap(),
            Some(rec(None, "hello"))
        );
        assert_eq!(reader.next_record().await.unwrap(), Some(rec(None, "x")));
        drop(write);
    }
}
