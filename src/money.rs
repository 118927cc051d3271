//! Prices: JSON numbers with at most 2 decimal places, stored as integer
//! cents so that 19.99 comes back as 19.99.

use rust_decimal::Decimal;

/// Largest accepted price in cents (fits i64 with room to spare).
const MAX_CENTS: i64 = 100_000_000_000_000;

/// `MAX_CENTS` in whole units, for the schema's `maximum`.
pub const MAX_PRICE: f64 = MAX_CENTS as f64 / 100.0;

/// A JSON number's text to cents; `Err` is the 422 field message.
pub fn to_cents(number: &serde_json::Number) -> Result<i64, &'static str> {
    let text = number.to_string();
    let value = Decimal::from_str_exact(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .map_err(|_| "must be a number with at most 2 decimal places")?
        .normalize();
    if value.is_sign_negative() && !value.is_zero() {
        return Err("must be >= 0");
    }
    if value.scale() > 2 {
        return Err("must have at most 2 decimal places");
    }
    // Checked: `*` panics past Decimal's ~7.9e28 (found by fuzz/request_body).
    let cents = value
        .checked_mul(Decimal::ONE_HUNDRED)
        .ok_or("is too large")?;
    let cents: i64 = cents
        .trunc()
        .to_string()
        .parse()
        .map_err(|_| "is too large")?;
    if cents > MAX_CENTS {
        return Err("is too large");
    }
    Ok(cents)
}

/// Cents to the JSON number clients sent: 1999 -> 19.99, 2000 -> 20.
pub fn from_cents(cents: i64) -> serde_json::Number {
    let text = Decimal::new(cents, 2).normalize().to_string();
    serde_json::from_str(&text).unwrap_or_else(|_| serde_json::Number::from(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> serde_json::Number {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn exact_round_trips() {
        for (text, cents) in [
            ("19.99", 1999),
            ("0", 0),
            ("0.1", 10),
            ("20", 2000),
            ("1234567.89", 123456789),
            ("0.07", 7),
        ] {
            assert_eq!(to_cents(&n(text)), Ok(cents), "{text}");
        }
        assert_eq!(from_cents(1999).to_string(), "19.99");
        assert_eq!(from_cents(2000).to_string(), "20");
        assert_eq!(from_cents(10).to_string(), "0.1");
        assert_eq!(from_cents(0).to_string(), "0");
    }

    #[test]
    fn refusals() {
        assert!(to_cents(&n("19.999")).is_err());
        assert!(to_cents(&n("-1")).is_err());
        assert!(to_cents(&n("-0.01")).is_err());
        assert!(to_cents(&n("1e30")).is_err());
        assert!(to_cents(&n("8888888888888888888888888888")).is_err());
        assert!(to_cents(&n("79228162514264337593543950335")).is_err());
        assert_eq!(to_cents(&n("1e2")), Ok(10000));
    }
}
