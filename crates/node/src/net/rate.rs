//! Rate caps in bytes per second: the download cap (`--max-download-rate`, applied by the
//! engine to what it reads) and the upload cap (`--max-upload-rate`, applied by the content
//! handler to what it sends). One token bucket counting KiB, shared by everything the cap
//! covers; kept in `net` because both the engine and the HTTP layer use it.

use std::num::NonZeroU32;
use std::sync::Arc;

/// A token-bucket rate limiter counting KiB.
pub type RateLimiter = governor::DefaultDirectRateLimiter;

/// The most KiB one wait asks of a limiter; a limiter's burst is at least this.
const THROTTLE_STEP_KIB: u32 = 256;

/// A limiter for `bytes_per_second` (at least 1 KiB/s). Its bucket holds a tenth of a second of
/// the rate (at least 256 KiB), so that a late timer or a slow write is made up afterwards
/// instead of lost: with a bucket of one chunk, measured throughput fell 2% short of the cap.
pub fn rate_limiter(bytes_per_second: u64) -> Arc<RateLimiter> {
    Arc::new(governor::RateLimiter::direct(quota(bytes_per_second)))
}

/// The token bucket for `bytes_per_second`, in KiB.
fn quota(bytes_per_second: u64) -> governor::Quota {
    let kib_per_second = u32::try_from(bytes_per_second / 1024).unwrap_or(u32::MAX).max(1);
    let kib = NonZeroU32::new(kib_per_second).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new((kib_per_second / 10).max(THROTTLE_STEP_KIB)).unwrap_or(NonZeroU32::MIN);
    governor::Quota::per_second(kib).allow_burst(burst)
}

/// Waits until `bytes` may pass `limiter`.
pub async fn throttle(limiter: &RateLimiter, bytes: usize) {
    let mut kib = bytes.div_ceil(1024) as u32;
    while kib > 0 {
        let take = kib.min(THROTTLE_STEP_KIB);
        if let Some(n) = NonZeroU32::new(take) {
            let _ = limiter.until_n_ready(n).await;
        }
        kib -= take;
    }
}

/// Parses a rate such as `25M`, `500K`, `1.5MiB` or `1000000` (bytes per second).
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a rate like 25M, 500K or 100000"))?;
    let factor = match unit
        .trim()
        .to_ascii_lowercase()
        .trim_end_matches("/s")
        .trim_end_matches('b')
        .trim_end_matches('i')
    {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("{text:?} has an unknown unit (use K, M or G)")),
    };
    let rate = (value * factor) as u64;
    if rate < 1024 {
        return Err(format!("{text:?} is below the smallest rate, 1K"));
    }
    Ok(rate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("25M"), Ok(25 << 20));
        assert_eq!(parse_rate("500K"), Ok(500 << 10));
        assert_eq!(parse_rate("1.5MiB"), Ok(1572864));
        assert_eq!(parse_rate("2048"), Ok(2048));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("10").is_err());
        assert!(parse_rate("5X").is_err());
    }

    #[test]
    fn a_bucket_holds_a_tenth_of_a_second_and_never_less_than_a_step() {
        let fast = quota(25 << 20);
        assert_eq!(fast.burst_size().get(), 2560, "25 MiB/s: 2.5 MiB at once");
        assert_eq!(fast.replenish_interval(), Duration::from_secs(1) / 25600);
        let slow = quota(1 << 20);
        assert_eq!(slow.burst_size().get(), THROTTLE_STEP_KIB, "a wait may ask for one step");
        assert_eq!(quota(10).burst_size().get(), THROTTLE_STEP_KIB);
    }
}
