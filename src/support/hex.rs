//! Lowercase hexadecimal, as webhookd writes it (token digests, key names, marks) and W3C
//! trace context requires it.

/// Two lowercase hex digits per byte.
pub(crate) fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * bytes.len());
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

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

    #[test]
    fn encoding_is_what_decoding_reads() {
        assert_eq!(encode(&[0x0a, 0xff, 0x00]), "0aff00");
        let bytes: [u8; 32] = std::array::from_fn(|i| (i * 37) as u8);
        assert_eq!(
            encode(&bytes),
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        assert_eq!(decode::<32>(&encode(&bytes)), Some(bytes));
    }
}
