//! Byte fields of a decoded frame that share the frame's buffer instead of
//! being copied out of it.
//!
//! A page in a [`PageResponse`](crate::protocol::Message::PageResponse) is
//! most of its frame. `rmp_serde`'s borrowing reader hands a field's bytes
//! to the visitor as a slice of the body; while [`decode_body_shared`]
//! (`super`) decodes, the body's [`Bytes`] sits in a thread-local, and a
//! field that is most of it becomes a slice of it (a reference count, no
//! copy). Smaller fields are copied, so a small piece kept for long (in a
//! cache) does not pin a large frame. Any other deserializer, or a body
//! decoded from a plain slice, copies as `Bytes` always did.

use std::cell::RefCell;
use std::fmt;

use bytes::Bytes;
use serde::Deserializer;
use serde::de::{Error, SeqAccess, Visitor};

thread_local! {
    /// The body being decoded on this thread, if it is shared.
    static SOURCE: RefCell<Option<Bytes>> = const { RefCell::new(None) };
}

/// Makes `body` the source of byte fields for the duration of `decode`
/// (restoring whatever was there, should decodes ever nest).
pub(super) fn with_source<T>(body: &Bytes, decode: impl FnOnce() -> T) -> T {
    struct Restore(Option<Bytes>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            SOURCE.with(|s| *s.borrow_mut() = previous);
        }
    }
    let previous = SOURCE.with(|s| s.borrow_mut().replace(body.clone()));
    let _restore = Restore(previous);
    decode()
}

/// `bytes` as a slice of the source when it lies inside it and is at least
/// half of it; else a copy.
fn share_or_copy(bytes: &[u8]) -> Bytes {
    SOURCE.with(|s| {
        let source = s.borrow();
        if let Some(src) = source.as_ref()
            && bytes.len().saturating_mul(2) >= src.len()
            && !bytes.is_empty()
        {
            // `slice_ref` panics on bytes outside the source: checked first.
            let (within, inner) = (src.as_ptr_range(), bytes.as_ptr_range());
            if within.start <= inner.start && inner.end <= within.end {
                return src.slice_ref(bytes);
            }
        }
        Bytes::copy_from_slice(bytes)
    })
}

struct SharedVisitor;

impl<'de> Visitor<'de> for SharedVisitor {
    type Value = Bytes;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("bytes")
    }

    fn visit_borrowed_bytes<E: Error>(self, v: &'de [u8]) -> Result<Bytes, E> {
        Ok(share_or_copy(v))
    }

    fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Bytes, E> {
        Ok(Bytes::copy_from_slice(v))
    }

    fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
        Ok(Bytes::from(v))
    }

    fn visit_borrowed_str<E: Error>(self, v: &'de str) -> Result<Bytes, E> {
        Ok(share_or_copy(v.as_bytes()))
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<Bytes, E> {
        Ok(Bytes::copy_from_slice(v.as_bytes()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
        // What `bytes`' own `Deserialize` accepts; the hint is capped, a
        // peer's count is not an allocation size.
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(Bytes::from(out))
    }
}

/// `deserialize_with` for a `Bytes` field.
pub(crate) fn bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
    d.deserialize_bytes(SharedVisitor)
}

/// `deserialize_with` for an `Option<Bytes>` field.
pub(crate) fn option_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Bytes>, D::Error> {
    struct OptionVisitor;
    impl<'de> Visitor<'de> for OptionVisitor {
        type Value = Option<Bytes>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("bytes or nothing")
        }
        fn visit_none<E: Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            bytes(d).map(Some)
        }
    }
    d.deserialize_option(OptionVisitor)
}
