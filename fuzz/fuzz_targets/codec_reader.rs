//! `common::codec::Reader` driven by a sequence of operations, checked
//! against a model (a plain cursor into the same buffer).
//!
//! Input: a u16 (big-endian) buffer length, that many bytes of buffer (fewer
//! if the input ends), then operations, one byte each plus operands:
//! `remaining`, `bytes(n)` with a small, a u32 or an arbitrary u64 `n`,
//! `array::<N>` for N in {0, 1, 3, 16, 32}, `u8`, `u16`, `u32`, `u64` and
//! `i64`; `finish` ends every run. Properties: never panics; every read returns exactly the
//! model's bytes, or `UnexpectedEnd` without consuming anything when too few
//! remain; `remaining` always matches; `finish` succeeds only at the end and
//! otherwise reports the trailing byte count.
#![no_main]

use common::codec::{CodecError, Reader};
use libfuzzer_sys::fuzz_target;

/// Takes `n` bytes of operands from the op stream (zeros when it ends).
fn operand<const N: usize>(ops: &mut &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let n = N.min(ops.len());
    let (head, tail) = ops.split_at(n);
    out[..n].copy_from_slice(head);
    *ops = tail;
    out
}

/// The model's read: `Some(bytes)` and advance, or `None` and stay.
fn model<'a>(buf: &'a [u8], pos: &mut usize, n: u64) -> Option<&'a [u8]> {
    let n = usize::try_from(n).ok()?;
    let end = pos.checked_add(n)?;
    let out = buf.get(*pos..end)?;
    *pos = end;
    Some(out)
}

fn check<T: PartialEq + std::fmt::Debug>(
    got: Result<T, CodecError>,
    want: Option<&[u8]>,
    decode: impl Fn(&[u8]) -> T,
) {
    match want {
        Some(bytes) => assert_eq!(got, Ok(decode(bytes))),
        None => assert_eq!(got, Err(CodecError::UnexpectedEnd)),
    }
}

macro_rules! array_op {
    ($r:ident, $buf:ident, $pos:ident, $n:literal) => {{
        let want = model($buf, &mut $pos, $n);
        check($r.array::<$n>(), want, |b| {
            let mut a = [0u8; $n];
            a.copy_from_slice(b);
            a
        });
    }};
}

macro_rules! int_op {
    ($r:ident, $buf:ident, $pos:ident, $method:ident, $t:ty) => {{
        const N: usize = std::mem::size_of::<$t>();
        let want = model($buf, &mut $pos, N as u64);
        check($r.$method(), want, |b| {
            let mut a = [0u8; N];
            a.copy_from_slice(b);
            <$t>::from_be_bytes(a)
        });
    }};
}

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    let buf_len = usize::from(u16::from_be_bytes(operand::<2>(&mut input)));
    let (buf, mut ops) = input.split_at(buf_len.min(input.len()));
    let mut r = Reader::new(buf);
    let mut pos = 0usize;

    while let Some((&op, tail)) = ops.split_first() {
        ops = tail;
        assert_eq!(r.remaining(), buf.len() - pos);
        match op % 14 {
            0 => assert_eq!(r.remaining(), buf.len() - pos),
            1 => {
                let n = u64::from(operand::<1>(&mut ops)[0]);
                let want = model(buf, &mut pos, n);
                check(
                    r.bytes(n as usize).map(<[u8]>::to_vec),
                    want,
                    <[u8]>::to_vec,
                );
            }
            2 => {
                let n = u64::from(u32::from_be_bytes(operand::<4>(&mut ops)));
                let want = model(buf, &mut pos, n);
                check(
                    r.bytes(n as usize).map(<[u8]>::to_vec),
                    want,
                    <[u8]>::to_vec,
                );
            }
            3 => {
                let raw = u64::from_be_bytes(operand::<8>(&mut ops));
                let n = usize::try_from(raw).unwrap_or(usize::MAX);
                let want = model(buf, &mut pos, n as u64);
                check(r.bytes(n).map(<[u8]>::to_vec), want, <[u8]>::to_vec);
            }
            4 => array_op!(r, buf, pos, 0),
            5 => array_op!(r, buf, pos, 1),
            6 => array_op!(r, buf, pos, 3),
            7 => array_op!(r, buf, pos, 16),
            8 => array_op!(r, buf, pos, 32),
            9 => int_op!(r, buf, pos, u8, u8),
            10 => int_op!(r, buf, pos, u16, u16),
            11 => int_op!(r, buf, pos, u32, u32),
            12 => int_op!(r, buf, pos, u64, u64),
            13 => int_op!(r, buf, pos, i64, i64),
            _ => unreachable!(),
        }
    }
    let left = buf.len() - pos;
    assert_eq!(r.remaining(), left);
    let expected = if left == 0 {
        Ok(())
    } else {
        Err(CodecError::TrailingData(left))
    };
    assert_eq!(r.finish(), expected);
});
