//! Bounded lifting: a guest's strings and lists are measured before the host copies them.
//!
//! wasmtime lifts a returned `string` or `list` by copying all of it, and a guest can return
//! many strings that all point at one large buffer: 1,000 rejections whose messages alias one
//! 32 MiB string would make the host allocate 32 GiB before any check of ours ran. The lazy
//! `WasmStr`/`WasmList` do not help for results: wasmtime runs the guest's post-return (which
//! frees those buffers) before the call returns to us. So these two types take over the lift
//! itself: [`Text`] copies at most `MAX` bytes of a string, and [`Listed`] refuses a list
//! longer than the limit of the call under way before it lifts an element. What the host
//! copies out of one call is then at most the limit times the largest element's cap.
//!
//! They implement wasmtime's `ComponentType` and `Lift` by hand, which leans on items wasmtime
//! marks `doc(hidden)` (the same ones its derive macros use); each delegates the actual
//! reading, bounds checks and UTF-8 validation to wasmtime's own lifts of `WasmList` and
//! `String`, and only narrows what they are asked to read.

use std::cell::Cell;

use wasmtime::ValRaw;
use wasmtime::component::__internal::wasmtime_environ::component::StringEncoding;
use wasmtime::component::__internal::{CanonicalAbiInfo, InstanceType, InterfaceType, LiftContext};
use wasmtime::component::{ComponentType, Lift, WasmList};

/// Marks a string the host cut at its cap.
const CUT_MARK: char = '…';

/// A guest string of which the host keeps at most `MAX` bytes, cut at a character boundary and
/// marked with `…` when longer. Only UTF-8 guests are read (Rust's, and every toolchain's
/// default): in UTF-16 a length counts code units, and a cut would have to keep the encoding's
/// tag bit, so such a string is refused rather than measured wrongly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text<const MAX: usize>(pub String);

/// A guest list that may hold at most as many items as the call under way allows (see
/// [`with_item_limit`]); a longer one fails the lift before any item is read.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed<T>(pub Vec<T>);

/// What the items of a [`Listed`] are, for the error that refuses too many.
pub trait Item {
    /// Plural, e.g. `rejections`.
    const NOUN: &'static str;
}

/// A list longer than the call allows.
#[derive(Debug, thiserror::Error)]
#[error("returned {count} {noun}, more than the {limit} this call allows")]
pub struct TooManyItems {
    pub noun: &'static str,
    pub count: usize,
    pub limit: usize,
}

thread_local! {
    /// Most items a [`Listed`] may hold in the guest call running on this thread. Lifting runs
    /// on the thread that makes the call, before the call returns.
    static ITEM_LIMIT: Cell<usize> = const { Cell::new(0) };
}

/// Runs `call` (a guest call, on this thread) with lists in its results and in its calls to
/// host imports limited to `limit` items each.
pub fn with_item_limit<R>(limit: usize, call: impl FnOnce() -> R) -> R {
    /// Puts the previous limit back however the call ends, a panic included.
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            ITEM_LIMIT.set(self.0);
        }
    }
    let _restore = Restore(ITEM_LIMIT.replace(limit));
    call()
}

unsafe impl<const MAX: usize> ComponentType for Text<MAX> {
    type Lower = <str as ComponentType>::Lower;
    const ABI: CanonicalAbiInfo = <str as ComponentType>::ABI;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <str as ComponentType>::typecheck(ty, types)
    }
}

unsafe impl<const MAX: usize> Lift for Text<MAX> {
    fn linear_lift_from_flat(cx: &mut LiftContext<'_>, ty: InterfaceType, src: &Self::Lower) -> wasmtime::Result<Self> {
        utf8_only(cx)?;
        let len = src[1].get_u32() as usize;
        lift_capped::<MAX>(len, |cut| {
            let mut pair = *src;
            pair[1] = ValRaw::u32(cut as u32);
            String::linear_lift_from_flat(cx, ty, &pair)
        })
    }

    fn linear_lift_from_memory(cx: &mut LiftContext<'_>, ty: InterfaceType, bytes: &[u8]) -> wasmtime::Result<Self> {
        utf8_only(cx)?;
        /// A (pointer, length) pair as it lies in guest memory, aligned as wasmtime expects.
        #[repr(C, align(8))]
        struct Pair([u8; 8]);
        let mut pair = Pair(bytes.try_into().map_err(|_| wasmtime::format_err!("a string is not 8 bytes"))?);
        let len = u32::from_le_bytes([pair.0[4], pair.0[5], pair.0[6], pair.0[7]]) as usize;
        lift_capped::<MAX>(len, |cut| {
            pair.0[4..].copy_from_slice(&(cut as u32).to_le_bytes());
            String::linear_lift_from_memory(cx, ty, &pair.0)
        })
    }
}

/// Refuses a guest whose strings are not UTF-8 (see [`Text`]).
fn utf8_only(cx: &LiftContext<'_>) -> wasmtime::Result<()> {
    match cx.options().string_encoding {
        StringEncoding::Utf8 => Ok(()),
        other => Err(wasmtime::format_err!("returned a string in {other:?}; the host reads only UTF-8 strings")),
    }
}

/// Lifts a string of `len` bytes through `lift(n)`, which reads its first `n`: all of it when
/// within `MAX`, else the longest prefix up to `MAX` that ends on a character boundary.
fn lift_capped<const MAX: usize>(
    len: usize,
    mut lift: impl FnMut(usize) -> wasmtime::Result<String>,
) -> wasmtime::Result<Text<MAX>> {
    if len <= MAX {
        return lift(len).map(Text);
    }
    // A UTF-8 character is at most 4 bytes: one of the four cuts below ends on a boundary,
    // unless the prefix itself is not UTF-8, and then the last error says so.
    let mut last = None;
    for cut in (MAX.saturating_sub(3)..=MAX).rev() {
        match lift(cut) {
            Ok(mut s) => {
                s.push(CUT_MARK);
                return Ok(Text(s));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| wasmtime::format_err!("a string could not be cut to {MAX} bytes")))
}

unsafe impl<T: ComponentType> ComponentType for Listed<T> {
    type Lower = <[T] as ComponentType>::Lower;
    const ABI: CanonicalAbiInfo = <[T] as ComponentType>::ABI;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <[T] as ComponentType>::typecheck(ty, types)
    }
}

unsafe impl<T: Lift + Item> Lift for Listed<T> {
    fn linear_lift_from_flat(cx: &mut LiftContext<'_>, ty: InterfaceType, src: &Self::Lower) -> wasmtime::Result<Self> {
        let list = <WasmList<T> as Lift>::linear_lift_from_flat(cx, ty, src)?;
        lift_items(cx, &list)
    }

    fn linear_lift_from_memory(cx: &mut LiftContext<'_>, ty: InterfaceType, bytes: &[u8]) -> wasmtime::Result<Self> {
        let list = <WasmList<T> as Lift>::linear_lift_from_memory(cx, ty, bytes)?;
        lift_items(cx, &list)
    }
}

/// The items of `list` (already bounds-checked against guest memory by wasmtime), once its
/// length is within the call's limit.
fn lift_items<T: Lift + Item>(cx: &mut LiftContext<'_>, list: &WasmList<T>) -> wasmtime::Result<Listed<T>> {
    let limit = ITEM_LIMIT.get();
    if list.len() > limit {
        return Err(TooManyItems { noun: T::NOUN, count: list.len(), limit }.into());
    }
    T::linear_lift_list_from_memory(cx, list).map(Listed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for wasmtime's string lift: reads the first `n` bytes of `s` as UTF-8.
    fn from(s: &[u8]) -> impl FnMut(usize) -> wasmtime::Result<String> + '_ {
        |n| Ok(std::str::from_utf8(&s[..n])?.to_string())
    }

    #[test]
    fn a_string_within_the_cap_is_kept_whole() {
        assert_eq!(lift_capped::<5>(5, from(b"hello")).unwrap(), Text("hello".into()));
    }

    #[test]
    fn a_longer_string_is_cut_at_the_cap_and_marked() {
        assert_eq!(lift_capped::<4>(11, from(b"hello world")).unwrap(), Text("hell…".into()));
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        // "aé€𝄞": characters of 1, 2, 3 and 4 bytes, ending at bytes 1, 3, 6 and 10.
        let s = "aé€𝄞".as_bytes();
        assert_eq!(lift_capped::<2>(10, from(s)).unwrap().0, "a…");
        assert_eq!(lift_capped::<5>(10, from(s)).unwrap().0, "aé…");
        assert_eq!(lift_capped::<6>(10, from(s)).unwrap().0, "aé€…");
        assert_eq!(lift_capped::<9>(10, from(s)).unwrap().0, "aé€…");
    }

    #[test]
    fn invalid_utf8_in_the_kept_prefix_is_an_error() {
        assert!(lift_capped::<4>(6, from(b"\xff\xfeabcd")).is_err());
    }

    #[test]
    fn the_item_limit_holds_for_the_call_and_is_restored_after() {
        assert_eq!(ITEM_LIMIT.get(), 0);
        with_item_limit(7, || {
            assert_eq!(ITEM_LIMIT.get(), 7);
            with_item_limit(2, || assert_eq!(ITEM_LIMIT.get(), 2));
            assert_eq!(ITEM_LIMIT.get(), 7);
        });
        assert_eq!(ITEM_LIMIT.get(), 0);
    }
}
