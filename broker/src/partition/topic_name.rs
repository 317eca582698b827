//! Topic names: Kafka's rules, so a name valid in one system is valid in the other.

/// Longest topic name (Kafka's limit: a partition directory name must fit in 255 bytes).
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Why a topic name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicNameError {
    /// The empty string.
    #[error("topic name is empty")]
    Empty,
    /// Over [`MAX_TOPIC_NAME_LEN`] bytes.
    #[error("topic name is {len} characters long; the limit is {max}")]
    TooLong {
        /// The name's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// `.` and `..` would name directories; `__` starts the broker's internal topics.
    #[error("topic name {name:?} is reserved")]
    Reserved {
        /// The name.
        name: String,
    },
    /// A character outside `[a-zA-Z0-9._-]`.
    #[error(
        "topic name {name:?} contains {ch:?} at position {at}: only ASCII letters, digits, '.', '_' and '-' are allowed"
    )]
    BadCharacter {
        /// The name.
        name: String,
        /// The offending character.
        ch: char,
        /// Its position (in characters).
        at: usize,
    },
}

/// Checks `name` against the rules.
pub fn validate_topic_name(name: &str) -> Result<(), TopicNameError> {
    if name.is_empty() {
        return Err(TopicNameError::Empty);
    }
    let len = name.chars().count();
    if len > MAX_TOPIC_NAME_LEN {
        return Err(TopicNameError::TooLong {
            len,
            max: MAX_TOPIC_NAME_LEN,
        });
    }
    if name == "." || name == ".." {
        return Err(TopicNameError::Reserved {
            name: name.to_string(),
        });
    }
    if let Some((at, ch)) = name
        .chars()
        .enumerate()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(TopicNameError::BadCharacter {
            name: name.to_string(),
            ch,
            at,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_style_names_pass() {
        for ok in [
            "a",
            "orders",
            "orders.v2",
            "__consumer_offsets",
            "A-b_c.1",
            &"x".repeat(249),
        ] {
            assert_eq!(validate_topic_name(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn bad_names_are_refused_with_the_reason() {
        assert_eq!(validate_topic_name(""), Err(TopicNameError::Empty));
        assert_eq!(
            validate_topic_name(&"x".repeat(250)),
            Err(TopicNameError::TooLong { len: 250, max: 249 })
        );
        assert_eq!(
            validate_topic_name(".."),
            Err(TopicNameError::Reserved { name: "..".into() })
        );
        assert_eq!(
            validate_topic_name("a/b"),
            Err(TopicNameError::BadCharacter {
                name: "a/b".into(),
                ch: '/',
                at: 1
            })
        );
        assert_eq!(
            validate_topic_name("héllo").unwrap_err().to_string(),
            "topic name \"héllo\" contains 'é' at position 1: only ASCII letters, digits, '.', '_' and '-' are allowed"
        );
    }
}
