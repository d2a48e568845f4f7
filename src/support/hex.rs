//! Lowercase hexadecimal, as webhookd writes it (token digests) and W3C trace context
//! requires it.

/// `N` bytes from exactly `2N` lowercase hex digits.
pub(crate) fn decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_lowercase_digits_decode() {
        assert_eq!(decode::<2>("0aff"), Some([0x0a, 0xff]));
        assert_eq!(decode::<2>("0AFF"), None);
        assert_eq!(decode::<2>("0af"), None);
        assert_eq!(decode::<1>("zz"), None);
    }
}
