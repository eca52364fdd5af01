//! Resource quantities (`100m`, `1.5Gi`, `1e3`): parsing, kube's canonical form, and the
//! integer views the scheduler and kubelet compare (`MilliValue`, `Value`, rounded up).

/// How a quantity was written, which decides its canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantityFormat {
    DecimalSI,
    BinarySI,
    DecimalExponent,
}

/// A parsed resource quantity, held in nano-units (rounded up, as kube rounds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    pub nano: i128,
    pub format: QuantityFormat,
}

/// Why a quantity string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    Format,
    #[error("unable to parse numeric part of quantity")]
    Numeric,
    #[error("unable to parse quantity's suffix")]
    Suffix,
}

/// Parse a quantity (`100m`, `1.5Gi`, `1e3`, `2`).
pub fn parse_quantity(input: &str) -> Result<Quantity, QuantityError> {
    let t = input.trim();
    if t.is_empty() {
        return Err(QuantityError::Format);
    }
    let (negative, rest) = match t.as_bytes()[0] {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let num_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(num_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(if number.is_empty() {
            QuantityError::Format
        } else {
            QuantityError::Numeric
        });
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    // (base, exponent, format)
    let (base, exp, format): (u32, i32, QuantityFormat) = match suffix {
        "" => (10, 0, QuantityFormat::DecimalSI),
        "n" => (10, -9, QuantityFormat::DecimalSI),
        "u" => (10, -6, QuantityFormat::DecimalSI),
        "m" => (10, -3, QuantityFormat::DecimalSI),
        "k" => (10, 3, QuantityFormat::DecimalSI),
        "M" => (10, 6, QuantityFormat::DecimalSI),
        "G" => (10, 9, QuantityFormat::DecimalSI),
        "T" => (10, 12, QuantityFormat::DecimalSI),
        "P" => (10, 15, QuantityFormat::DecimalSI),
        "E" => (10, 18, QuantityFormat::DecimalSI),
        "Ki" => (2, 10, QuantityFormat::BinarySI),
        "Mi" => (2, 20, QuantityFormat::BinarySI),
        "Gi" => (2, 30, QuantityFormat::BinarySI),
        "Ti" => (2, 40, QuantityFormat::BinarySI),
        "Pi" => (2, 50, QuantityFormat::BinarySI),
        "Ei" => (2, 60, QuantityFormat::BinarySI),
        s if s.starts_with(['e', 'E']) => {
            let e: i32 = s[1..].parse().map_err(|_| QuantityError::Suffix)?;
            (10, e, QuantityFormat::DecimalExponent)
        }
        s if s.bytes().all(|c| b"eEinumkKMGTP+-0123456789".contains(&c)) => {
            return Err(QuantityError::Suffix)
        }
        _ => return Err(QuantityError::Format),
    };
    // Value = digits * 10^-frac_len * base^exp, in nano units, rounded up.
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 30 {
        return Err(QuantityError::Numeric);
    }
    let mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| QuantityError::Numeric)?
    };
    let frac_len = frac_part.len() as i32;
    let (mut num, mut den): (i128, i128) = (mantissa, 1);
    let pow10 = |n: i32| -> Option<i128> { 10i128.checked_pow(n.unsigned_abs()) };
    // nano: multiply by 10^9.
    let dec_exp = 9 - frac_len + if base == 10 { exp } else { 0 };
    if dec_exp >= 0 {
        num = num
            .checked_mul(pow10(dec_exp).ok_or(QuantityError::Numeric)?)
            .ok_or(QuantityError::Numeric)?;
    } else {
        den = pow10(dec_exp).ok_or(QuantityError::Numeric)?;
    }
    if base == 2 {
        num = num
            .checked_mul(1i128 << exp)
            .ok_or(QuantityError::Numeric)?;
    }
    let mut nano = num / den;
    if num % den != 0 {
        nano += 1;
    }
    if negative {
        nano = -nano;
    }
    Ok(Quantity { nano, format })
}

impl Quantity {
    /// kube's canonical string form (`Quantity.String()`).
    pub fn canonical(&self) -> String {
        let v = self.nano;
        if v == 0 {
            return "0".to_string();
        }
        let mut format = self.format;
        if format == QuantityFormat::BinarySI {
            let whole = v % 1_000_000_000 == 0;
            if v.abs() < 1024 * 1_000_000_000 || !whole {
                format = QuantityFormat::DecimalSI;
            }
        }
        let sign = if v < 0 { "-" } else { "" };
        let a = v.unsigned_abs();
        match format {
            QuantityFormat::BinarySI => {
                let mut n = a / 1_000_000_000;
                let mut i = 0;
                while i < 6 && n.is_multiple_of(1024) {
                    n /= 1024;
                    i += 1;
                }
                let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][i];
                format!("{sign}{n}{suffix}")
            }
            _ => {
                // Largest exponent (a multiple of 3, from -9) that keeps an integer.
                let mut n = a;
                let mut e: i32 = -9;
                while n.is_multiple_of(1000) && e < 18 {
                    n /= 1000;
                    e += 3;
                }
                if format == QuantityFormat::DecimalExponent {
                    if e == 0 {
                        format!("{sign}{n}")
                    } else {
                        format!("{sign}{n}e{e}")
                    }
                } else {
                    let suffix = match e {
                        -9 => "n",
                        -6 => "u",
                        -3 => "m",
                        0 => "",
                        3 => "k",
                        6 => "M",
                        9 => "G",
                        12 => "T",
                        15 => "P",
                        _ => "E",
                    };
                    format!("{sign}{n}{suffix}")
                }
            }
        }
    }
}

impl Quantity {
    /// The value in thousandths (`MilliValue`: millicores for cpu), rounded up.
    pub fn milli_value(&self) -> i64 {
        clamp_i64(ceil_div(self.nano, 1_000_000))
    }

    /// The value in whole units (`Value`: bytes for memory, count for pods), rounded up.
    pub fn value(&self) -> i64 {
        clamp_i64(ceil_div(self.nano, 1_000_000_000))
    }
}

fn ceil_div(n: i128, d: i128) -> i128 {
    let q = n / d;
    if n % d > 0 {
        q + 1
    } else {
        q
    }
}

fn clamp_i64(v: i128) -> i64 {
    v.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        let c = |s: &str| parse_quantity(s).map(|q| q.canonical());
        assert_eq!(c("1000m"), Ok("1".into()));
        assert_eq!(c("0.5"), Ok("500m".into()));
        assert_eq!(c("1024Mi"), Ok("1Gi".into()));
        assert_eq!(c("1536Mi"), Ok("1536Mi".into()));
        assert_eq!(c("1.5Gi"), Ok("1536Mi".into()));
        assert_eq!(c("1G"), Ok("1G".into()));
        assert_eq!(c("1e3"), Ok("1e3".into()));
        assert_eq!(c("100"), Ok("100".into()));
        assert_eq!(c("512"), Ok("512".into()));
        assert_eq!(parse_quantity("abc"), Err(QuantityError::Format));
        assert_eq!(parse_quantity("1Zi"), Err(QuantityError::Format));
        assert_eq!(parse_quantity("100m").map(|q| q.nano), Ok(100_000_000));
    }

    #[test]
    fn integer_views_round_up() {
        let q = |s: &str| parse_quantity(s).expect(s);
        assert_eq!(q("100m").milli_value(), 100);
        assert_eq!(q("1.5").milli_value(), 1500);
        assert_eq!(q("1n").milli_value(), 1);
        assert_eq!(q("128Mi").value(), 128 << 20);
        assert_eq!(q("1G").value(), 1_000_000_000);
        assert_eq!(q("1500m").value(), 2);
        assert_eq!(q("-1").milli_value(), -1000);
        assert_eq!(q("110").value(), 110);
    }
}
