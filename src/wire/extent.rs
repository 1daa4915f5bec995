//! Where the MessagePack value at the start of a buffer ends.
//!
//! The zero-copy decoder (`rmp_serde`'s borrowing reader) reports no
//! position, so the frame body's "filled exactly" check walks the value's
//! markers first: lengths only, never the bytes of strings and binaries,
//! without recursion (a count of values still to skip), every number from
//! the peer checked.

/// Bytes the MessagePack value at the start of `buf` takes, or `None` when
/// `buf` does not start with a whole value (truncated, or the never-used
/// marker `0xc1`).
pub(crate) fn value_len(buf: &[u8]) -> Option<usize> {
    let mut at = 0usize;
    // Values still to skip; each takes at least one byte, so more than the
    // bytes left cannot be whole.
    let mut pending: usize = 1;
    while pending > 0 {
        pending -= 1;
        let marker = *buf.get(at)?;
        at += 1;
        let (fixed, len_bytes, children): (usize, usize, usize) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0, 0),
            0x80..=0x8f => (0, 0, 2 * usize::from(marker & 0x0f)),
            0x90..=0x9f => (0, 0, usize::from(marker & 0x0f)),
            0xa0..=0xbf => (usize::from(marker & 0x1f), 0, 0),
            0xc1 => return None,
            // bin 8/16/32 and str 8/16/32: a length, then that many bytes.
            0xc4 | 0xd9 => (0, 1, 0),
            0xc5 | 0xda => (0, 2, 0),
            0xc6 | 0xdb => (0, 4, 0),
            // ext 8/16/32: a length, a type byte, the data.
            0xc7 => (1, 1, 0),
            0xc8 => (1, 2, 0),
            0xc9 => (1, 4, 0),
            0xca => (4, 0, 0),
            0xcb => (8, 0, 0),
            0xcc | 0xd0 => (1, 0, 0),
            0xcd | 0xd1 => (2, 0, 0),
            0xce | 0xd2 => (4, 0, 0),
            0xcf | 0xd3 => (8, 0, 0),
            // fixext 1/2/4/8/16: a type byte and the data.
            0xd4 => (2, 0, 0),
            0xd5 => (3, 0, 0),
            0xd6 => (5, 0, 0),
            0xd7 => (9, 0, 0),
            0xd8 => (17, 0, 0),
            // array 16/32 and map 16/32: a count of values.
            0xdc | 0xde => (0, 2, 0),
            0xdd | 0xdf => (0, 4, 0),
        };
        let mut skip = fixed;
        if len_bytes > 0 {
            let n = read_len(buf.get(at..at.checked_add(len_bytes)?)?);
            at += len_bytes;
            match marker {
                0xdc | 0xdd => pending = pending.checked_add(n)?,
                0xde | 0xdf => pending = pending.checked_add(n.checked_mul(2)?)?,
                _ => skip = skip.checked_add(n)?,
            }
        }
        pending = pending.checked_add(children)?;
        at = at.checked_add(skip)?;
        if at > buf.len() || pending > buf.len() - at {
            return None;
        }
    }
    Some(at)
}

/// A big-endian length of 1, 2 or 4 bytes.
fn read_len(bytes: &[u8]) -> usize {
    bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;

    /// Where `rmp_serde`'s own (copying) reader stops after one value.
    fn decoder_len(buf: &[u8]) -> Option<usize> {
        let mut de = rmp_serde::Deserializer::new(std::io::Cursor::new(buf));
        de.set_max_depth(10_000);
        serde::de::IgnoredAny::deserialize(&mut de).ok()?;
        usize::try_from(de.position()).ok()
    }

    #[test]
    fn every_marker_family_is_measured_like_the_decoder() {
        let cases: Vec<Vec<u8>> = vec![
            vec![0x05],
            vec![0xe0],
            vec![0xc0],
            vec![0xc3],
            vec![0xa3, b'a', b'b', b'c'],
            vec![0xd9, 2, b'h', b'i'],
            vec![0xc4, 3, 1, 2, 3],
            vec![0xc5, 0, 2, 9, 9],
            vec![0xc6, 0, 0, 0, 1, 7],
            vec![0xcb, 0, 0, 0, 0, 0, 0, 0, 0],
            vec![0xcd, 1, 2],
            vec![0xd3, 1, 2, 3, 4, 5, 6, 7, 8],
            vec![0x92, 0x01, 0xa1, b'x'],
            vec![0x81, 0xa1, b'k', 0x90],
            vec![0xdc, 0, 2, 0xc2, 0xc3],
            vec![0xde, 0, 1, 0x01, 0x02],
            vec![0xd4, 1, 2],
            vec![0xc7, 2, 1, 8, 9],
        ];
        for case in cases {
            assert_eq!(value_len(&case), decoder_len(&case), "{case:02x?}");
            assert_eq!(value_len(&case), Some(case.len()), "{case:02x?}");
            // Anything after the value is not part of it.
            let mut longer = case.clone();
            longer.push(0xc0);
            assert_eq!(value_len(&longer), Some(case.len()), "{case:02x?}");
        }
    }

    #[test]
    fn truncated_or_impossible_values_have_no_length() {
        for bad in [
            &[][..],
            &[0xc1],
            &[0xa3, b'a'],
            &[0xc6, 0xff, 0xff, 0xff, 0xff],
            &[0xdd, 0xff, 0xff, 0xff, 0xff],
            &[0xdf, 0xff, 0xff, 0xff, 0xff, 0x01],
            &[0x92, 0x01],
        ] {
            assert_eq!(value_len(bad), None, "{bad:02x?}");
        }
    }

    proptest! {
        #[test]
        fn agrees_with_the_decoder_on_any_bytes(buf in proptest::collection::vec(any::<u8>(), 0..256)) {
            // The decoder refuses some whole values the walk accepts (ext
            // types it does not know, strings that are not UTF-8 are fine
            // for IgnoredAny); where it accepts, both stop at one place.
            if let Some(n) = decoder_len(&buf) {
                prop_assert_eq!(value_len(&buf), Some(n));
            }
        }

        #[test]
        fn agrees_on_encoded_values(v in proptest::collection::vec((any::<u32>(), proptest::collection::vec(any::<u8>(), 0..300), any::<String>(), any::<Option<i64>>()), 0..20)) {
            let buf = rmp_serde::to_vec_named(&v).unwrap();
            prop_assert_eq!(value_len(&buf), Some(buf.len()));
        }
    }
}
