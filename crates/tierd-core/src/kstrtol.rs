//! A faithful copy of the kernel's `kstrtol(s, 0, &res)` behaviour, the parser every sysfs
//! `store` of a number goes through (`lib/kstrtox.c`).
//!
//! The rules, from `_parse_integer_fixup_radix`, `_parse_integer_limit`, `_kstrtoull` and
//! `kstrtoll`:
//! - the buffer is a C string: bytes after the first NUL are never looked at;
//! - one leading `-`; or one leading `+` (only on the non-negative path, so `-+1` is invalid);
//! - base 0: `0x`/`0X` followed by a hex digit selects hex and skips the prefix; else a
//!   leading `0` selects octal (the `0` stays and parses as a digit); else decimal. So `0x`
//!   alone parses `0` in octal and then fails on the `x`;
//! - at least one digit of the base, then at most one `\n`, then the end;
//! - overflow of `u64` while parsing, or a value outside `i64`, is `ERANGE`.
//!
//! The RFC's store maps every error to `EINVAL`; we keep the distinction here only so that
//! `tierd path check` can explain why.

/// Why a buffer is not a number by the kernel's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not a number in the kernel's syntax (the kernel's `-EINVAL`).
    #[error("not a number in the kernel's kstrtol syntax (base 0: decimal, 0x hex, 0 octal)")]
    Invalid,
    /// A number that does not fit in a signed 64-bit `long` (the kernel's `-ERANGE`).
    #[error("out of range for a signed 64-bit long")]
    Range,
}

/// Parses `buf` as `kstrtol(buf, 0, &v)` does.
pub fn kstrtol(buf: &[u8]) -> Result<i64, ParseError> {
    let s = match buf.iter().position(|&b| b == 0) {
        Some(nul) => &buf[..nul],
        None => buf,
    };
    if let Some(rest) = s.strip_prefix(b"-") {
        let magnitude = kstrtoull(rest)?;
        // The kernel negates in u64 and rejects a result that is positive as an i64;
        // 2^63 is the one magnitude whose negation is i64::MIN.
        return match magnitude {
            0 => Ok(0),
            m if m <= 1 << 63 => Ok(0_i64.wrapping_sub_unsigned(m)),
            _ => Err(ParseError::Range),
        };
    }
    let s = s.strip_prefix(b"+").unwrap_or(s);
    let v = kstrtoull(s)?;
    i64::try_from(v).map_err(|_| ParseError::Range)
}

/// `_kstrtoull(s, 0, …)`: radix fixup, digits, one optional trailing newline.
fn kstrtoull(s: &[u8]) -> Result<u64, ParseError> {
    let (base, digits) = match s {
        [b'0', b'x' | b'X', d, ..] if d.is_ascii_hexdigit() => (16, &s[2..]),
        [b'0', ..] => (8, s),
        _ => (10, s),
    };
    let mut value: u64 = 0;
    let mut overflow = false;
    let mut used = 0;
    for &c in digits {
        let Some(d) = char::from(c).to_digit(base) else {
            break;
        };
        match value.checked_mul(u64::from(base)).and_then(|v| v.checked_add(u64::from(d))) {
            Some(v) => value = v,
            None => overflow = true,
        }
        used += 1;
    }
    if used == 0 {
        return Err(ParseError::Invalid);
    }
    if overflow {
        return Err(ParseError::Range);
    }
    match &digits[used..] {
        [] | [b'\n'] => Ok(value),
        _ => Err(ParseError::Invalid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ParseError::{Invalid, Range};

    #[test]
    fn kernel_edge_cases() {
        let cases: &[(&[u8], Result<i64, ParseError>)] = &[
            (b"2", Ok(2)),
            (b"2\n", Ok(2)),
            (b"0x2", Ok(2)),
            (b"0X2", Ok(2)),
            (b"0x1f", Ok(31)),
            (b"02", Ok(2)),
            (b"010", Ok(8)),
            (b"0", Ok(0)),
            (b"0\n", Ok(0)),
            (b"08", Err(Invalid)),
            (b"+2", Ok(2)),
            (b"-1", Ok(-1)),
            (b"-9", Ok(-9)),
            (b"-0", Ok(0)),
            (b"-0x10", Ok(-16)),
            (b"", Err(Invalid)),
            (b"\n", Err(Invalid)),
            (b" 2", Err(Invalid)),
            (b"2 ", Err(Invalid)),
            (b"2\n\n", Err(Invalid)),
            (b"2\r\n", Err(Invalid)),
            (b"0x", Err(Invalid)),
            (b"0x\n", Err(Invalid)),
            (b"0xg", Err(Invalid)),
            (b"+", Err(Invalid)),
            (b"-", Err(Invalid)),
            (b"-+1", Err(Invalid)),
            (b"+-1", Err(Invalid)),
            (b"++1", Err(Invalid)),
            (b"--1", Err(Invalid)),
            (b"1a", Err(Invalid)),
            (b"9223372036854775807", Ok(i64::MAX)),
            (b"9223372036854775808", Err(Range)),
            (b"-9223372036854775808", Ok(i64::MIN)),
            (b"-9223372036854775809", Err(Range)),
            (b"18446744073709551615", Err(Range)),
            (b"18446744073709551616", Err(Range)),
            (b"0x7fffffffffffffff", Ok(i64::MAX)),
            (b"0xffffffffffffffffff", Err(Range)),
            // The buffer is a C string: the kernel never sees past the NUL.
            (b"2\0garbage", Ok(2)),
            (b"\x002", Err(Invalid)),
        ];
        for (input, want) in cases {
            assert_eq!(kstrtol(input), *want, "input {:?}", String::from_utf8_lossy(input));
        }
    }

    proptest::proptest! {
        #[test]
        fn every_i64_round_trips_in_three_bases(v: i64) {
            let dec = format!("{v}");
            let hex = if v < 0 { format!("-0x{:x}", v.unsigned_abs()) } else { format!("0x{v:x}") };
            let oct = if v < 0 { format!("-0{:o}", v.unsigned_abs()) } else { format!("0{v:o}") };
            for text in [dec, hex, oct] {
                proptest::prop_assert_eq!(kstrtol(text.as_bytes()), Ok(v), "{}", text);
                let nl = format!("{text}\n");
                proptest::prop_assert_eq!(kstrtol(nl.as_bytes()), Ok(v), "{}", nl);
            }
        }

        #[test]
        fn never_panics(bytes: Vec<u8>) {
            let _ = kstrtol(&bytes);
        }
    }
}
