//! Failed authentications per client address, on both protocols (PostgreSQL's `auth_delay`
//! idea): each failure is answered later than the one before, so guessing a token from one
//! address takes hours, not seconds.

use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failed authentications per client address, and the delay before answering the next one:
/// none for a first failure, then 250 ms doubling with each further failure within a minute,
/// up to 8 s. A success from the address clears its count. At most [`AuthDelays::MAX_ADDRESSES`]
/// addresses are remembered (the oldest forgotten first).
#[derive(Default)]
pub struct AuthDelays {
    recent: std::sync::Mutex<std::collections::HashMap<IpAddr, (u32, Instant)>>,
}

/// The address failures are counted by: an IPv4 address, or an IPv6 address's /64 (one client
/// holds a whole /64).
fn counted(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

impl AuthDelays {
    const MAX_ADDRESSES: usize = 10_000;
    const WINDOW: Duration = Duration::from_secs(60);
    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(8);

    /// Records a failure from `ip`; the delay to wait before answering it.
    pub fn failed(&self, ip: IpAddr) -> Duration {
        let ip = counted(ip);
        let Ok(mut recent) = self.recent.lock() else {
            return Self::MAX;
        };
        let now = Instant::now();
        if recent.len() >= Self::MAX_ADDRESSES {
            recent.retain(|_, (_, at)| now.duration_since(*at) < Self::WINDOW);
            if recent.len() >= Self::MAX_ADDRESSES
                && let Some(oldest) = recent
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(k, _)| *k)
            {
                recent.remove(&oldest);
            }
        }
        let entry = recent.entry(ip).or_insert((0, now));
        if now.duration_since(entry.1) >= Self::WINDOW {
            entry.0 = 0;
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
        Self::delay(entry.0)
    }

    /// The delay before answering the `n`th recent failure.
    fn delay(n: u32) -> Duration {
        if n <= 1 {
            return Duration::ZERO;
        }
        Self::FIRST
            .saturating_mul(1u32 << (n - 2).min(16))
            .min(Self::MAX)
    }

    /// A success from `ip` clears its failures.
    pub fn succeeded(&self, ip: IpAddr) {
        if let Ok(mut recent) = self.recent.lock() {
            recent.remove(&counted(ip));
        }
    }

    /// How long calls from `ip` are still refused after its last failure (for a protocol that
    /// cannot hold an answer back, Flight's interceptor): the delay its failures have earned,
    /// counted from the last one.
    pub fn locked_for(&self, ip: IpAddr) -> Option<Duration> {
        let recent = self.recent.lock().ok()?;
        let (n, at) = recent.get(&counted(ip))?;
        // A mistyped token or two costs nothing; guessing does.
        if *n < 3 {
            return None;
        }
        let wait = Self::delay(*n + 1);
        let elapsed = at.elapsed();
        (elapsed < wait).then(|| wait - elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_authentications_are_slowed_per_address() {
        let d = AuthDelays::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(d.failed(a), Duration::ZERO);
        assert_eq!(d.failed(a), Duration::from_millis(250));
        assert_eq!(d.failed(a), Duration::from_millis(500));
        assert_eq!(d.failed(b), Duration::ZERO, "another address is not slowed");
        for _ in 0..20 {
            d.failed(a);
        }
        assert_eq!(d.failed(a), Duration::from_secs(8), "capped");
        assert!(
            d.locked_for(a).is_some(),
            "refused for a while after failures"
        );
        assert!(d.locked_for(b).is_none(), "a mistyped token costs nothing");
        assert!(d.locked_for("10.0.0.3".parse().unwrap()).is_none());
        d.succeeded(a);
        assert_eq!(d.failed(a), Duration::ZERO, "a success clears the count");
        // An IPv6 client is one /64.
        let v6a: IpAddr = "2001:db8::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        d.failed(v6a);
        assert_eq!(d.failed(v6b), Duration::from_millis(250));
    }
}
