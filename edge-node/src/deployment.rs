//! What a route points at: a function's active version and, during a canary, a second version
//! taking a share of the requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::runtime::Function;

/// The versions serving one function, picked per request.
#[derive(Debug)]
pub struct Deployment {
    active: Arc<Function>,
    canary: Option<(Arc<Function>, u8)>,
    requests: AtomicU64,
}

impl Deployment {
    /// Every request to `function`.
    pub fn single(function: Arc<Function>) -> Self {
        Self {
            active: function,
            canary: None,
            requests: AtomicU64::new(0),
        }
    }

    /// `percent` of the requests (1 to 99) to `canary`, the rest to `active`.
    pub fn with_canary(active: Arc<Function>, canary: Arc<Function>, percent: u8) -> Self {
        Self {
            active,
            canary: Some((canary, percent.min(100))),
            requests: AtomicU64::new(0),
        }
    }

    /// The active version.
    pub fn active(&self) -> &Arc<Function> {
        &self.active
    }

    /// The canary and its percentage, if there is one.
    pub fn canary(&self) -> Option<(&Arc<Function>, u8)> {
        self.canary.as_ref().map(|(f, p)| (f, *p))
    }

    /// The version that serves the next request. A canary gets its share spread evenly over
    /// every run of requests (a counter scrambled by splitmix64, so consecutive requests do not
    /// go in blocks), without a random number generator on the request path.
    pub fn pick(&self) -> &Arc<Function> {
        let Some((canary, percent)) = &self.canary else {
            return &self.active;
        };
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        if splitmix64(n) % 100 < u64::from(*percent) {
            canary
        } else {
            &self.active
        }
    }
}

fn splitmix64(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::splitmix64;

    #[test]
    fn canary_share_holds_over_short_and_long_runs() {
        for percent in [1u64, 10, 50, 90] {
            for (start, len) in [(0u64, 2_000u64), (123_456, 2_000), (0, 100_000)] {
                let hits = (start..start + len)
                    .filter(|&n| splitmix64(n) % 100 < percent)
                    .count() as f64;
                let share = hits / len as f64 * 100.0;
                assert!(
                    (share - percent as f64).abs() < 1.5,
                    "{percent}% canary got {share:.2}% over {len} requests from {start}"
                );
            }
        }
    }
}
